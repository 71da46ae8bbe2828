/**
 * `@beamclaw/core`: an Erlang/OTP-style runtime for AI agents on Node.js.
 *
 * @packageDocumentation
 */
export * from "./errors.js";
export * from "./runtime/index.js";
export * from "./telemetry.js";
