/**
 * `@beamclaw/core`: an Erlang/OTP-style runtime for AI agents on Node.js.
 *
 * @packageDocumentation
 */

export * from "./channels/index.js";
export * from "./cluster/index.js";
export * from "./config/index.js";
export * from "./cron/index.js";
export * from "./errors.js";
export * from "./heartbeat/index.js";
export * from "./providers/index.js";
export * from "./runtime/index.js";
export * from "./sessions/index.js";
export * from "./skills/index.js";
export * from "./store/index.js";
export * from "./telemetry.js";
export * from "./tenants/index.js";
export * from "./tools/exec/index.js";
export * from "./tools/index.js";
export * from "./tools/web-fetch/index.js";
export * from "./unicode.js";
