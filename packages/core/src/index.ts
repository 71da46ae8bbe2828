/**
 * `@beamclaw/core`: an Erlang/OTP-style runtime for AI agents on Node.js.
 *
 * @packageDocumentation
 */
export * from "./errors.js";
export * from "./providers/index.js";
export * from "./runtime/index.js";
export * from "./store/index.js";
export * from "./telemetry.js";
export * from "./sessions/index.js";
export * from "./tools/index.js";
export * from "./config/index.js";
