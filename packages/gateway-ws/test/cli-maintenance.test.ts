/**
 * `sessions.maintenance` from `beamclaw.yaml`: the standalone gateway's periodic passes follow
 * the file as it changes, their period (`everyMs`) included, without a restart.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { waitFor } from "./support.js";

const TOKEN = "maintenance-test-token-0123456789";
const dirs: string[] = [];
const started: StartedGateway[] = [];

afterEach(async () => {
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function yaml(maintenance: string): string {
  return [
    "store: { kind: memory }",
    'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
    "agents: { main: { model: local/m1 } }",
    "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
    `sessions: { maintenance: ${maintenance} }`,
    "",
  ].join("\n");
}

describe("beamclaw gateway: sessions.maintenance", () => {
  it("takes a new everyMs from the file while running, and keeps the old one when the new is refused", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-maintenance-"));
    dirs.push(dir);
    const configPath = join(dir, "beamclaw.yaml");
    await writeFile(configPath, yaml("{ mode: warn, everyMs: 3600000 }"));
    const logs: string[] = [];
    const gateway = await startFromConfig({
      configPath,
      env: { GW_TOKEN: TOKEN },
      port: 0,
      logSink: (line) => logs.push(line),
    });
    started.push(gateway);
    expect(gateway.maintenance.everyMs).toBe(3_600_000);

    await writeFile(configPath, yaml("{ mode: warn, everyMs: 5000 }"));
    await waitFor("the new period", () => gateway.maintenance.everyMs === 5000, 10_000);

    // A period below a second is refused by the schema: the running one stays.
    await writeFile(configPath, yaml("{ mode: warn, everyMs: 10 }"));
    await waitFor("the refused reload logged", () => logs.some((l) => /everyMs/.test(l)), 10_000);
    expect(gateway.maintenance.everyMs).toBe(5000);
  });
});
