import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The test configuration every package shares: forked workers (so a leaked handle
 * belongs to one file's process) and the open-handle check after each file.
 */
export default defineConfig({
  test: {
    pool: "forks",
    include: ["test/**/*.test.ts"],
    setupFiles: [fileURLToPath(new URL("./test/open-handles.ts", import.meta.url))],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    teardownTimeout: 5_000,
    // `expect.poll` gives up after 1 s by default: too soon on a loaded 2-core CI machine.
    expect: { poll: { timeout: 5_000 } },
    // The JSON report lets .ci/run print one "N passed, N failed" line across packages.
    reporters: ["default", "json"],
    outputFile: { json: ".vitest-results.json" },
  },
});
