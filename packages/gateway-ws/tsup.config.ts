import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", cli: "src/cli.ts" },
  // Adapters are optional peers, loaded by the CLI with import() only when the config needs them.
  external: [
    "@beamclaw/channels",
    "@beamclaw/mcp",
    "@beamclaw/providers",
    "@beamclaw/store-fs",
    "@beamclaw/store-redis",
  ],
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: true,
  sourcemap: true,
  clean: true,
  treeshake: true,
});
