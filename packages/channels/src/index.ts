/**
 * `@beamclaw/channels`: chat channel adapters for BeamClaw, each a `ChannelPlugin` (v1) of
 * `@beamclaw/core`, run by its `ChannelManager` and proven by its channel conformance suite.
 *
 * @packageDocumentation
 */
export * from "./discord/index.js";
export * from "./slack/index.js";
export * from "./telegram/index.js";
export * from "./webhook/index.js";
