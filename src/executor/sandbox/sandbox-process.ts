/**
 * The sandbox process: a child of the executor that runs one job at a time. It is started with no
 * environment (no hub password), under Node's permission model (it may read only its own code: no host
 * files, no child processes, no workers), and with a small heap. A job that exhausts it, or anything else
 * that kills it, takes down this process alone; the executor reports the job as crashed and starts a new
 * one. The job's files live in memory (see job-tree.ts), and results are read out here, so nothing the job
 * made touches the unit's disk.
 */
import { filesBelow, JobTree, OutputLimitError, TreeError, type FileNode } from './job-tree.js';
import { PROCESS_MODULE_CACHE, type InputPiece, type ProcessOutcome, type RunReply, type RunRequest } from './messages.js';
import { collectResults, lastLine } from './result-collection.js';
import { StreamSink, Wasi, WasiExit, WasiRaise } from './wasi-preview1.js';

/** Bytes of a discarded stderr kept to explain a failure. */
const STDERR_TAIL_BYTES = 4_096;

const modules = new Map<string, WebAssembly.Module>();

function moduleOf(req: RunRequest): WebAssembly.Module | undefined {
  const held = modules.get(req.moduleKey);
  if (held !== undefined || req.module === undefined) return held;
  const module = new WebAssembly.Module(req.module as Uint8Array<ArrayBuffer>);
  modules.set(req.moduleKey, module);
  if (modules.size > PROCESS_MODULE_CACHE) modules.delete(modules.keys().next().value!);
  return module;
}

function run(req: RunRequest): RunReply {
  const reply = (outcome: ProcessOutcome, message: string, extra: Partial<RunReply> = {}): RunReply => ({ type: 'done', runId: req.runId, outcome, message, stderrTail: '', ...extra });
  let module: WebAssembly.Module | undefined;
  try {
    module = moduleOf(req);
  } catch (err) {
    return reply('invalid', `not valid WebAssembly: ${(err as Error).message}`);
  }
  if (module === undefined) return reply('invalid', `the sandbox lost module ${req.moduleKey}`);

  const tree = new JobTree({ outputBytes: req.limits.outputBytes, maxNodes: req.limits.maxNodes });
  let stdout: FileNode | StreamSink;
  let stderr: FileNode | StreamSink;
  try {
    for (const dir of req.dirs) tree.mkdirs(dir);
    for (const [path, bytes] of req.inputs) tree.stage(path, bytes);
    stdout = req.stdoutFile !== undefined ? streamFile(tree, req.stdoutFile) : new StreamSink(0);
    stderr = req.stderrFile !== undefined ? streamFile(tree, req.stderrFile) : new StreamSink(STDERR_TAIL_BYTES);
  } catch (err) {
    const why = err instanceof TreeError ? 'a file and a directory of the plan share a path, or a path is not allowed' : (err as Error).message;
    return reply('staging', `cannot put the job's files in place: ${why}`);
  }

  const wasi = new Wasi({ args: req.args, env: req.env, tree, stdin: req.stdin ?? new Uint8Array(0), stdout, stderr, maxFds: req.limits.maxFds });
  const imports: WebAssembly.Imports = { wasi_snapshot_preview1: wasi.imports() };
  let memory: WebAssembly.Memory | undefined;
  if (req.importedMemory !== undefined) {
    const { module: from, name, limits } = req.importedMemory;
    memory = new WebAssembly.Memory({ initial: limits.minPages, ...(limits.maxPages !== undefined ? { maximum: limits.maxPages } : {}) });
    imports[from] = { [name]: memory };
  }
  let ended: Pick<RunReply, 'outcome' | 'message' | 'exitCode'>;
  try {
    const instance = new WebAssembly.Instance(module, imports);
    const exported = instance.exports.memory;
    if (memory === undefined && exported instanceof WebAssembly.Memory) memory = exported;
    if (memory === undefined) return reply('invalid', 'the module has no memory to share with WASI');
    wasi.bind(memory);
    const start = instance.exports._start;
    if (typeof start !== 'function') return reply('invalid', 'the module exports no _start function');
    (start as () => void)();
    ended = { outcome: 'exited', exitCode: 0, message: 'exited with code 0' };
  } catch (err) {
    ended = ending(err);
    if (ended.outcome === 'invalid') return reply('invalid', ended.message);
  }
  const stderrText = stderr instanceof StreamSink ? stderr.text() : new TextDecoder().decode(stderr.data.subarray(Math.max(0, stderr.size - STDERR_TAIL_BYTES), stderr.size));
  const collected = collectResults(tree, req.results, req.namedResults, { maxBytes: req.limits.maxResultBytes, maxFiles: req.limits.maxResultFiles });
  return {
    type: 'done',
    runId: req.runId,
    ...ended,
    ...(memory !== undefined ? { memoryBytes: memory.buffer.byteLength } : {}),
    stderrTail: lastLine(stderrText),
    collected,
    ...(req.keepTree === true ? { tree: filesBelow(tree.root).map(([path, f]) => [path, f.data.subarray(0, f.size)] as const) } : {}),
  };
}

/** How a throw out of `_start` ended the run. */
function ending(err: unknown): Pick<RunReply, 'outcome' | 'message' | 'exitCode'> {
  if (err instanceof WasiExit) return { outcome: 'exited', exitCode: err.code, message: `exited with code ${err.code}` };
  if (err instanceof WasiRaise) return { outcome: 'raised', message: err.message };
  if (err instanceof OutputLimitError) return { outcome: 'output_limit', message: err.message };
  if (err instanceof WebAssembly.LinkError) return { outcome: 'invalid', message: `cannot instantiate the module: ${err.message}` };
  if (err instanceof WebAssembly.RuntimeError) return { outcome: 'trap', message: `trap: ${err.message}` };
  // V8 reports a WASM stack overflow as a RangeError.
  if (err instanceof RangeError) return { outcome: 'trap', message: `trap: ${err.message}` };
  return { outcome: 'trap', message: `trap: ${err instanceof Error ? err.message : String(err)}` };
}

/** A stream redirected to a job path (REC's stdout_file/stderr_file): created empty, in its directory. */
function streamFile(tree: JobTree, path: string): FileNode {
  const slash = path.lastIndexOf('/');
  const dir = tree.mkdirs(slash < 0 ? '' : path.slice(0, slash));
  const name = path.slice(slash + 1);
  const existing = dir.entries.get(name);
  if (existing?.kind === 'file') {
    tree.resize(existing, 0);
    return existing;
  }
  return tree.create(dir, name, 'file');
}

/** Large inputs of the coming run, filled piece by piece; a run takes those sent for it. */
let arriving: { runId: number; files: Map<string, Uint8Array> } | undefined;

function receivePiece(piece: InputPiece): void {
  if (arriving?.runId !== piece.runId) arriving = { runId: piece.runId, files: new Map() };
  let whole = arriving.files.get(piece.path);
  if (whole === undefined) arriving.files.set(piece.path, (whole = new Uint8Array(piece.size)));
  whole.set(piece.bytes, piece.at);
}

process.on('message', (msg: RunRequest | InputPiece) => {
  if (msg?.type === 'input') return receivePiece(msg);
  if (msg?.type !== 'run') return;
  const large = arriving?.runId === msg.runId ? [...arriving.files] : [];
  arriving = undefined;
  const req = large.length === 0 ? msg : { ...msg, inputs: [...msg.inputs, ...large] };
  let reply: RunReply;
  try {
    reply = run(req);
  } catch (err) {
    reply = { type: 'done', runId: req.runId, outcome: 'trap', message: `the sandbox failed: ${(err as Error).message}`, stderrTail: '' };
  }
  process.send?.(reply);
});
// The executor going away closes the channel: nothing is left to run for.
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
