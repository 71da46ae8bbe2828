import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared";

export default mergeConfig(
  shared,
  defineConfig({
    test: {
      // Real servers and a real browser: the first request to `next dev` compiles the app.
      testTimeout: 60_000,
      hookTimeout: 90_000,
    },
  }),
);
