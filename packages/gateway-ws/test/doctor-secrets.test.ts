/**
 * `beamclaw doctor` prints its findings to a terminal or a CI log: a secret of the
 * configuration never appears in them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { doctor } from "../src/cli/doctor.js";

const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function configFile(storeUrl: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-doctor-"));
  dirs.push(dir);
  const path = join(dir, "beamclaw.yaml");
  await writeFile(
    path,
    [
      "agents:",
      "  - id: main",
      "    model: local/m1",
      "providers:",
      "  local:",
      "    kind: openai-compatible",
      "    baseUrl: http://127.0.0.1:9/v1",
      "store:",
      "  kind: redis",
      `  url: "${storeUrl}"`,
      "",
    ].join("\n"),
  );
  return path;
}

describe("doctor", () => {
  it("masks the password of store.url, also when the URL's scheme is wrong", async () => {
    for (const url of [
      "redis://:s3cret-pass@cache.internal:6379/0",
      "valkey://admin:s3cret-pass@cache.internal:6379/0",
    ]) {
      const findings = await doctor(await configFile(url), { env: {} });
      const store = findings.find((f) => f.message.includes("cache.internal"));
      expect(store?.message, url).toContain("***@cache.internal:6379/0");
      expect(JSON.stringify(findings), url).not.toContain("s3cret-pass");
    }
  });
});
