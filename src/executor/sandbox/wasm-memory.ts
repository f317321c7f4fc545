/**
 * Caps a WebAssembly module's linear memory by rewriting the limits in its binary.
 *
 * A WASM module's memory lives outside the V8 heap, so a worker's heap limits do not bound it, and the
 * module decides how far it grows. Rewriting every memory's declared maximum to the cap makes
 * `memory.grow` fail past it, which the module sees as an allocation failure (malloc returns NULL), so a
 * memory-hungry job stops at the cap instead of exhausting the field unit.
 */

export const WASM_PAGE_BYTES = 65_536;
/** wasm32 addresses at most 4 GiB: 65,536 pages. */
export const MAX_WASM32_PAGES = 65_536;

const SECTION_IMPORT = 2;
const SECTION_MEMORY = 5;
const IMPORT_KIND_FUNC = 0;
const IMPORT_KIND_TABLE = 1;
const IMPORT_KIND_MEMORY = 2;
const IMPORT_KIND_GLOBAL = 3;

export class WasmFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WasmFormatError';
  }
}

export interface MemoryLimits {
  readonly minPages: number;
  readonly maxPages: number | undefined;
}

export interface CappedModule {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The memories found (imported first, then defined), as declared before capping. */
  readonly declared: readonly MemoryLimits[];
  /** An imported memory the host must provide, with the capped limits; undefined if none is imported. */
  readonly importedMemory?: { module: string; name: string; limits: MemoryLimits };
}

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  byte(): number {
    if (this.pos >= this.buf.length) throw new WasmFormatError('unexpected end of module');
    return this.buf[this.pos++]!;
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) throw new WasmFormatError('LEB128 value out of range');
        return result;
      }
      shift += 7;
    }
    throw new WasmFormatError('LEB128 value too long');
  }

  name(): string {
    const len = this.u32();
    const end = this.pos + len;
    if (end > this.buf.length) throw new WasmFormatError('name runs past the end of the module');
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(this.buf.subarray(this.pos, end));
    } catch {
      throw new WasmFormatError('an import name is not valid UTF-8');
    }
    this.pos = end;
    return text;
  }

  limits(): MemoryLimits {
    const flags = this.byte();
    if (flags !== 0 && flags !== 1) throw new WasmFormatError(`unsupported memory flags 0x${flags.toString(16)} (shared or 64-bit memory)`);
    const minPages = this.u32();
    const maxPages = flags === 1 ? this.u32() : undefined;
    return { minPages, maxPages };
  }
}

function leb(value: number): number[] {
  const out: number[] = [];
  let v = value;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function encodeLimits(l: MemoryLimits): number[] {
  return l.maxPages === undefined ? [0, ...leb(l.minPages)] : [1, ...leb(l.minPages), ...leb(l.maxPages)];
}

function cap(l: MemoryLimits, capPages: number): MemoryLimits {
  if (l.minPages > capPages) {
    throw new MemoryCapError(`the module needs at least ${l.minPages * (WASM_PAGE_BYTES >> 10)} KiB of memory at start, more than the ${capPages * (WASM_PAGE_BYTES >> 10)} KiB cap`);
  }
  return { minPages: l.minPages, maxPages: Math.min(l.maxPages ?? capPages, capPages) };
}

export class MemoryCapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryCapError';
  }
}

function skipImportDesc(r: Reader, kind: number): void {
  switch (kind) {
    case IMPORT_KIND_FUNC:
      r.u32();
      return;
    case IMPORT_KIND_TABLE: {
      r.byte(); // reference type
      const flags = r.byte();
      r.u32();
      if (flags & 1) r.u32();
      return;
    }
    case IMPORT_KIND_GLOBAL:
      r.byte();
      r.byte();
      return;
    default:
      throw new WasmFormatError(`unknown import kind ${kind}`);
  }
}

/** Returns the module with every memory's maximum set to at most `capBytes`. */
export function capMemory(module: Uint8Array, capBytes: number): CappedModule {
  if (!Number.isFinite(capBytes) || capBytes <= 0) throw new RangeError(`memory cap must be a positive number of bytes, got ${capBytes}`);
  const capPages = Math.min(MAX_WASM32_PAGES, Math.max(1, Math.floor(capBytes / WASM_PAGE_BYTES)));
  if (module.length < 8 || module[0] !== 0x00 || module[1] !== 0x61 || module[2] !== 0x73 || module[3] !== 0x6d) {
    throw new WasmFormatError('not a WebAssembly module (bad magic number)');
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) throw new WasmFormatError('unsupported WebAssembly binary version');
  const r = new Reader(module);
  r.pos = 8;
  // Untouched sections are copied as views; only the (small) rewritten ones are rebuilt.
  const out: Uint8Array[] = [module.subarray(0, 8)];
  const declared: MemoryLimits[] = [];
  let importedMemory: CappedModule['importedMemory'];
  while (r.pos < module.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const bodyStart = r.pos;
    const bodyEnd = bodyStart + size;
    if (bodyEnd > module.length) throw new WasmFormatError(`section ${id} runs past the end of the module`);
    if (id === SECTION_MEMORY) {
      const count = r.u32();
      const body: number[] = leb(count);
      for (let i = 0; i < count; i++) {
        const l = r.limits();
        declared.push(l);
        body.push(...encodeLimits(cap(l, capPages)));
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('memory section size mismatch');
      out.push(Uint8Array.from([id, ...leb(body.length), ...body]));
    } else if (id === SECTION_IMPORT) {
      const count = r.u32();
      // Import names can be long: keep the entries as views and only rebuild a memory's limits.
      const parts: Uint8Array[] = [Uint8Array.from(leb(count))];
      for (let i = 0; i < count; i++) {
        const entryStart = r.pos;
        const mod = r.name();
        const name = r.name();
        const kind = r.byte();
        if (kind === IMPORT_KIND_MEMORY) {
          const headerEnd = r.pos;
          const l = r.limits();
          declared.push(l);
          const capped = cap(l, capPages);
          importedMemory = { module: mod, name, limits: capped };
          parts.push(module.subarray(entryStart, headerEnd), Uint8Array.from(encodeLimits(capped)));
        } else {
          skipImportDesc(r, kind);
          parts.push(module.subarray(entryStart, r.pos));
        }
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('import section size mismatch');
      const size = parts.reduce((n, p) => n + p.length, 0);
      out.push(Uint8Array.from([id, ...leb(size)]), ...parts);
    } else {
      out.push(module.subarray(start, bodyEnd));
    }
    r.pos = bodyEnd;
  }
  const bytes = new Uint8Array(out.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of out) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return { bytes, declared, ...(importedMemory !== undefined ? { importedMemory } : {}) };
}
