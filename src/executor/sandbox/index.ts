export * from './pool.js';
export { capMemory, MemoryCapError, WasmFormatError, WASM_PAGE_BYTES, type CappedModule, type MemoryLimits } from './wasm-memory.js';
export type { JobIo } from './messages.js';
