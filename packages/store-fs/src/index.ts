/**
 * `@beamclaw/store-fs`: BeamClaw's embedded default store. Sessions, transcripts, cron jobs,
 * devices, approvals, the durable inbound queue, key/value and locks as JSON and JSONL files
 * a person can read, written atomically and recovered safely after a crash.
 *
 * @example
 * ```ts
 * import { createFsStore } from "@beamclaw/store-fs";
 *
 * const store = createFsStore({ dir: "./data" });
 * await store.open();
 * await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 1 });
 * await store.close();
 * ```
 *
 * @packageDocumentation
 */
export type { FsStoreRecovery } from "./context.js";
export { encodeFileName } from "./file-names.js";
export { createFsStore, FsStore, type FsStoreOptions } from "./fs-store.js";
export { kernelFilesystemOf } from "./kernel-fs.js";
