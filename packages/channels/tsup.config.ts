import { defineConfig } from "tsup";

export default defineConfig({
  entry: {
    index: "src/index.ts",
    "discord/index": "src/discord/index.ts",
    "slack/index": "src/slack/index.ts",
    "telegram/index": "src/telegram/index.ts",
    "webhook/index": "src/webhook/index.ts",
  },
  external: ["@beamclaw/core"],
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: true,
  sourcemap: true,
  clean: true,
  treeshake: true,
});
