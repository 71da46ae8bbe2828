import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts" },
  external: ["@beamclaw/core", "@modelcontextprotocol/sdk"],
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: true,
  sourcemap: true,
  clean: true,
  treeshake: true,
});
