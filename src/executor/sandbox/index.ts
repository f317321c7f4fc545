export * from './pool.js';
export { checkModule, MemoryCapError, ModuleRefusedError, WasmFormatError, WASM_PAGE_BYTES, type CheckedModule, type MemoryLimits, type ModuleCaps } from './module-check.js';
export type { JobIo, SandboxLimits } from './messages.js';
export type { CollectedResults } from './result-collection.js';
export { WASI_PREVIEW1_FUNCTIONS } from './wasi-functions.js';
