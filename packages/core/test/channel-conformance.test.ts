/**
 * The channel conformance suite, run against the in-memory platform of `@beamclaw/core/testing`
 * (every capability declared), and against a narrower declaration to prove the skips follow the
 * capabilities.
 */
import { channelConformanceSuite, createMemoryPlatform } from "../src/testing/index.js";

channelConformanceSuite("MemoryChannel", {
  platform: () => createMemoryPlatform(),
  create: (platform) => platform.createChannel(),
});

channelConformanceSuite("MemoryChannel (direct messages and typing only, 120 characters)", {
  platform: () =>
    createMemoryPlatform({
      capabilities: {
        groups: false,
        threads: false,
        media: false,
        edits: false,
        reactions: false,
        maxMessageLength: 120,
      },
    }),
  create: (platform) => platform.createChannel(),
});
