import { describeEntryPoints } from "../../../test/entry-points.js";

describeEntryPoints(new URL("..", import.meta.url), {
  "@beamclaw/core": [
    "Actor",
    "AgentRuntime",
    "BeamClawError",
    "DynamicSupervisor",
    "MemoryStore",
    "Registry",
    "Supervisor",
    "createProviderChain",
    "defineTool",
  ],
  "@beamclaw/core/otel": ["startOtelBridge"],
  "@beamclaw/core/testing": [
    "channelConformanceSuite",
    "createMemoryPlatform",
    "createScriptedProvider",
    "storeConformanceSuite",
  ],
});
