import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

// Each case starts real processes and servers (a gateway, redis-server, a model server) and
// waits on real timeouts: allow a minute per test, and run at most two files at once.
export default mergeConfig(
  shared,
  defineConfig({
    test: {
      testTimeout: 60_000,
      hookTimeout: 30_000,
      maxWorkers: 2,
      minWorkers: 1,
    },
  }),
);
