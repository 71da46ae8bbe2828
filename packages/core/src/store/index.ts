export * from "./kv-paging.js";
export * from "./limits.js";
export * from "./memory-store.js";
export type * from "./types.js";
