/**
 * Checks a job's WebAssembly module before it runs, and rewrites the limits in its binary so that the
 * executor's caps hold whatever the module asks for. Each refusal names the rule it breaks.
 *
 * - It must be a WASI command: an exported `_start` function and a memory (exported, or imported).
 * - It may import only `wasi_snapshot_preview1` functions the sandbox provides, and one memory. No
 *   tables, globals or other modules' functions: nothing else of the host is reachable.
 * - No shared or 64-bit memory (threads are not available to jobs).
 * - Every memory's maximum is rewritten to at most the memory cap, and every table's to at most the
 *   table cap. A WASM module's memory and tables live outside the sandbox's JavaScript heap limits, so
 *   these rewrites are what makes `memory.grow` and `table.grow` fail at the cap (malloc returns NULL),
 *   instead of exhausting the field unit.
 */

export const WASM_PAGE_BYTES = 65_536;
/** wasm32 addresses at most 4 GiB: 65,536 pages. */
export const MAX_WASM32_PAGES = 65_536;

const SECTION_IMPORT = 2;
const SECTION_TABLE = 4;
const SECTION_MEMORY = 5;
const SECTION_EXPORT = 7;
const KIND_FUNC = 0;
const KIND_TABLE = 1;
const KIND_MEMORY = 2;
const KIND_GLOBAL = 3;
const KIND_TAG = 4;

/** The bytes are not a WebAssembly module this checker can read. */
export class WasmFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WasmFormatError';
  }
}

/** The module is valid WebAssembly but breaks a rule of the sandbox; the message names the rule. */
export class ModuleRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModuleRefusedError';
  }
}

export interface MemoryLimits {
  readonly minPages: number;
  readonly maxPages: number | undefined;
}

export interface ModuleCaps {
  readonly memoryBytes: number;
  /** Most elements any one table may hold. */
  readonly tableElements: number;
  /** Function names a module may import from wasi_snapshot_preview1. */
  readonly wasiFunctions: ReadonlySet<string>;
}

export interface CheckedModule {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The memories found (imported first, then defined), as declared before capping. */
  readonly declared: readonly MemoryLimits[];
  /** An imported memory the host must provide, with the capped limits; undefined if none is imported. */
  readonly importedMemory?: { module: string; name: string; limits: MemoryLimits };
}

/** The only memory import allowed: what `wasm-ld --import-memory` produces. */
const MEMORY_IMPORT = { module: 'env', name: 'memory' };
const WASI_MODULE = 'wasi_snapshot_preview1';

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

  /** Limits of a memory or table: flag 1 means a maximum follows; others (shared, 64-bit) are refused. */
  limits(what: 'memory' | 'table'): MemoryLimits {
    const flags = this.byte();
    if (flags === 2 || flags === 3) throw new ModuleRefusedError(`the module declares a shared ${what}; jobs run single-threaded and may not use threads`);
    if (flags !== 0 && flags !== 1) throw new ModuleRefusedError(`the module declares a 64-bit or otherwise unsupported ${what} (limits flags 0x${flags.toString(16)}); jobs use wasm32`);
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

function capMemoryLimits(l: MemoryLimits, capPages: number): MemoryLimits {
  if (l.minPages > capPages) {
    throw new MemoryCapError(`the module needs at least ${l.minPages * (WASM_PAGE_BYTES >> 10)} KiB of memory at start, more than the ${capPages * (WASM_PAGE_BYTES >> 10)} KiB cap`);
  }
  return { minPages: l.minPages, maxPages: Math.min(l.maxPages ?? capPages, capPages) };
}

function capTableLimits(l: MemoryLimits, capElements: number): MemoryLimits {
  if (l.minPages > capElements) {
    throw new ModuleRefusedError(`the module's table needs ${l.minPages} elements at start, more than the executor's limit of ${capElements}`);
  }
  return { minPages: l.minPages, maxPages: Math.min(l.maxPages ?? capElements, capElements) };
}

/** The module needs more memory at start than the job may have: the job fails with memory_limit. */
export class MemoryCapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryCapError';
  }
}

function memoryCapPages(capBytes: number): number {
  if (!Number.isFinite(capBytes) || capBytes <= 0) throw new RangeError(`memory cap must be a positive number of bytes, got ${capBytes}`);
  return Math.min(MAX_WASM32_PAGES, Math.max(1, Math.floor(capBytes / WASM_PAGE_BYTES)));
}

/**
 * Checks the module against the sandbox's rules and returns it with every memory's maximum set to at most
 * `caps.memoryBytes` and every table's to at most `caps.tableElements`. Throws WasmFormatError for bytes
 * that are not a module, ModuleRefusedError for a rule broken, MemoryCapError for a memory too large.
 */
export function checkModule(module: Uint8Array, caps: ModuleCaps): CheckedModule {
  const capPages = memoryCapPages(caps.memoryBytes);
  if (module.length < 8 || module[0] !== 0x00 || module[1] !== 0x61 || module[2] !== 0x73 || module[3] !== 0x6d) {
    throw new WasmFormatError('not a WebAssembly module (bad magic number)');
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) throw new WasmFormatError('unsupported WebAssembly binary version');
  const r = new Reader(module);
  r.pos = 8;
  // Untouched sections are copied as views; only the (small) rewritten ones are rebuilt.
  const out: Uint8Array[] = [module.subarray(0, 8)];
  const declared: MemoryLimits[] = [];
  let importedMemory: CheckedModule['importedMemory'];
  let hasStart = false;
  let hasMemoryExport = false;
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
        const l = r.limits('memory');
        declared.push(l);
        body.push(...encodeLimits(capMemoryLimits(l, capPages)));
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('memory section size mismatch');
      out.push(Uint8Array.from([id, ...leb(body.length), ...body]));
    } else if (id === SECTION_TABLE) {
      const count = r.u32();
      const body: number[] = leb(count);
      for (let i = 0; i < count; i++) {
        const refType = r.byte();
        body.push(refType, ...encodeLimits(capTableLimits(r.limits('table'), caps.tableElements)));
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('table section size mismatch');
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
        if (kind === KIND_MEMORY) {
          if (mod !== MEMORY_IMPORT.module || name !== MEMORY_IMPORT.name) {
            throw new ModuleRefusedError(`the module imports a memory as ${mod}.${name}; the only memory import allowed is ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name}`);
          }
          const headerEnd = r.pos;
          const l = r.limits('memory');
          declared.push(l);
          const capped = capMemoryLimits(l, capPages);
          importedMemory = { module: mod, name, limits: capped };
          parts.push(module.subarray(entryStart, headerEnd), Uint8Array.from(encodeLimits(capped)));
          continue;
        }
        if (kind !== KIND_FUNC) {
          const what = kind === KIND_TABLE ? 'a table' : kind === KIND_GLOBAL ? 'a global' : kind === KIND_TAG ? 'an exception tag' : `an import of kind ${kind}`;
          throw new ModuleRefusedError(`the module imports ${what} (${mod}.${name}); a job may import only WASI preview1 functions and its memory`);
        }
        if (mod !== WASI_MODULE) {
          throw new ModuleRefusedError(`the module imports ${mod}.${name}; a job may import functions only from ${WASI_MODULE}`);
        }
        if (!caps.wasiFunctions.has(name)) {
          throw new ModuleRefusedError(`the module imports ${mod}.${name}, which is not a WASI preview1 function the sandbox provides`);
        }
        r.u32();
        parts.push(module.subarray(entryStart, r.pos));
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('import section size mismatch');
      const size = parts.reduce((n, p) => n + p.length, 0);
      out.push(Uint8Array.from([id, ...leb(size)]), ...parts);
    } else if (id === SECTION_EXPORT) {
      const count = r.u32();
      for (let i = 0; i < count; i++) {
        const name = r.name();
        const kind = r.byte();
        r.u32();
        if (name === '_start' && kind === KIND_FUNC) hasStart = true;
        if (name === 'memory' && kind === KIND_MEMORY) hasMemoryExport = true;
      }
      if (r.pos !== bodyEnd) throw new WasmFormatError('export section size mismatch');
      out.push(module.subarray(start, bodyEnd));
    } else {
      out.push(module.subarray(start, bodyEnd));
    }
    r.pos = bodyEnd;
  }
  if (!hasStart) throw new ModuleRefusedError('the module exports no _start function; a job must be a WASI command module');
  if (!hasMemoryExport && importedMemory === undefined) throw new ModuleRefusedError('the module neither exports nor imports a memory; a WASI command exports "memory"');
  const bytes = new Uint8Array(out.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of out) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return { bytes, declared, ...(importedMemory !== undefined ? { importedMemory } : {}) };
}
