// Sums the vitest JSON reports of every workspace package into one closing line:
// "<label>: N passed, N failed" (and skipped, if any); failed counts failed tests plus test
// files that failed outside a test. Exits 1 if a report is missing for a package that has
// tests, or if anything failed.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const label = process.argv[2] ?? "tests";
let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
for (const group of ["packages", "examples", "bench", "tests"]) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  const candidates = group === "bench" ? [dir] : readdirSync(dir).map((d) => join(dir, d));
  for (const pkg of candidates) {
    const hasTests = existsSync(join(pkg, "vitest.config.ts"));
    const report = join(pkg, ".vitest-results.json");
    if (!existsSync(report)) {
      if (hasTests) {
        console.error(`no test report for ${pkg}`);
        missing++;
      }
      continue;
    }
    const r = JSON.parse(readFileSync(report, "utf8"));
    passed += r.numPassedTests;
    // A suite can fail outside any test (a hook, an open-handle check): count it too.
    failed += r.numFailedTests + (r.numFailedTestSuites ?? 0);
    skipped += r.numPendingTests + r.numTodoTests;
  }
}
const tail = skipped > 0 ? `, ${skipped} skipped` : "";
console.log(`${label}: ${passed} passed, ${failed} failed${tail}`);
process.exit(failed > 0 || missing > 0 || passed === 0 ? 1 : 0);
