/**
 * `@beamclaw/core/testing`: what adapter authors and users need to test against BeamClaw:
 * the conformance suites every adapter runs unchanged against its real backend, and
 * in-memory stand-ins for external services.
 *
 * These modules import `vitest`; load them only from test files.
 *
 * @packageDocumentation
 */
export * from "./channel-conformance.js";
export * from "./memory-channel.js";
export * from "./ports.js";
export * from "./scripted-provider.js";
export * from "./store-conformance.js";
