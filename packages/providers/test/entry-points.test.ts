import { describeEntryPoints } from "../../../test/entry-points.js";

describeEntryPoints(new URL("..", import.meta.url), {
  "@beamclaw/providers": [
    "createAnthropicProvider",
    "createOpenAICompatibleProvider",
    "createOpenAIProvider",
  ],
});
