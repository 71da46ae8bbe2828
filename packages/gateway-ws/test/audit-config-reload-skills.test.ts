/**
 * `beamclaw gateway` applying a reload of `beamclaw.yaml` to its agents: a changed `skills`
 * selection, a new agent with skills, and an agents-only change after `skills.dirs` changed
 * all give the agents the skills the file now says, not those of the start.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { closeClients, TestClient, waitFor } from "./support.js";

const TOKEN = "audit-config-reload-token-0123456789";
const dirs: string[] = [];
const started: StartedGateway[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function yaml(lines: { skillsDirs: string; agents: string }): string {
  return [
    "store: { kind: memory }",
    'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
    `skills: { dirs: ${lines.skillsDirs} }`,
    `agents: ${lines.agents}`,
    "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
    "",
  ].join("\n");
}

async function skill(dir: string, name: string): Promise<void> {
  await mkdir(join(dir, name), { recursive: true });
  await writeFile(
    join(dir, name, "SKILL.md"),
    `---\nname: ${name}\ndescription: the ${name} skill\n---\nUse ${name}-instructions.\n`,
  );
}

/** The skill instructions in the prompt of `agentId`, as `<name>` for each. */
function skillsOf(gateway: StartedGateway, agentId: string): string[] {
  const agent = gateway.runtime.agents.find((a) => a.id === agentId);
  const text = (agent?.skills ?? []).join("\n");
  return ["greet", "farewell", "weather"].filter((name) => text.includes(`${name}-instructions`));
}

async function start(text: string): Promise<{ gateway: StartedGateway; configPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), "bc-audit-reload-"));
  dirs.push(dir);
  await skill(join(dir, "skills"), "greet");
  await skill(join(dir, "skills"), "farewell");
  await skill(join(dir, "more"), "weather");
  const configPath = join(dir, "beamclaw.yaml");
  await writeFile(configPath, text);
  const gateway = await startFromConfig({
    configPath,
    env: { GW_TOKEN: TOKEN },
    port: 0,
    logSink: () => undefined,
  });
  started.push(gateway);
  return { gateway, configPath };
}

describe("beamclaw gateway: a reload of the agents' skills", () => {
  it("a changed skills selection of an agent is applied", async () => {
    const { gateway, configPath } = await start(
      yaml({ skillsDirs: "[./skills]", agents: "{ main: { model: local/m, skills: [greet] } }" }),
    );
    expect(skillsOf(gateway, "main")).toEqual(["greet"]);

    await writeFile(
      configPath,
      yaml({
        skillsDirs: "[./skills]",
        agents: "{ main: { model: local/m, skills: [greet, farewell] } }",
      }),
    );
    await waitFor("the new selection", () => skillsOf(gateway, "main").length === 2, 10_000);
    expect(skillsOf(gateway, "main")).toEqual(["greet", "farewell"]);
  });

  it("an agent added by a reload gets the skills it selects", async () => {
    const { gateway, configPath } = await start(
      yaml({ skillsDirs: "[./skills]", agents: "{ main: { model: local/m, skills: [greet] } }" }),
    );
    await writeFile(
      configPath,
      yaml({
        skillsDirs: "[./skills]",
        agents:
          "{ main: { model: local/m, skills: [greet] }, ops: { model: local/m, skills: [farewell] } }",
      }),
    );
    await waitFor(
      "the new agent",
      () => gateway.runtime.agents.some((a) => a.id === "ops"),
      10_000,
    );
    expect(skillsOf(gateway, "ops")).toEqual(["farewell"]);
    expect(skillsOf(gateway, "main")).toEqual(["greet"]);
  });

  it("skills from a directory added by one reload stay through a later agents-only reload", async () => {
    const { gateway, configPath } = await start(
      yaml({ skillsDirs: "[./skills]", agents: "{ main: { model: local/m } }" }),
    );
    expect(skillsOf(gateway, "main")).toEqual(["greet", "farewell"]);

    await writeFile(
      configPath,
      yaml({ skillsDirs: "[./skills, ./more]", agents: "{ main: { model: local/m } }" }),
    );
    await waitFor("the added directory", () => skillsOf(gateway, "main").length === 3, 10_000);

    await writeFile(
      configPath,
      yaml({ skillsDirs: "[./skills, ./more]", agents: "{ main: { model: local/m2 } }" }),
    );
    await waitFor(
      "the new model",
      () => gateway.runtime.agents.find((a) => a.id === "main")?.model === "local/m2",
      10_000,
    );
    expect(skillsOf(gateway, "main")).toEqual(["greet", "farewell", "weather"]);
  });

  it("skills.status reports the skills of the reloaded file, not those of the start", async () => {
    const { gateway, configPath } = await start(
      yaml({ skillsDirs: "[./skills]", agents: "{ main: { model: local/m, skills: [greet] } }" }),
    );
    const admin = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    await writeFile(
      configPath,
      yaml({
        skillsDirs: "[./skills, ./more]",
        agents: "{ main: { model: local/m, skills: [greet, weather] } }",
      }),
    );
    await waitFor("the new selection", () => skillsOf(gateway, "main").length === 2, 10_000);
    const status = await admin.request("skills.status", { agentId: "main" });
    expect(status.dirs).toHaveLength(2);
    const enabled = (status.skills as Array<{ name: string; enabled: boolean }>)
      .filter((s) => s.enabled)
      .map((s) => s.name)
      .sort();
    expect(enabled).toEqual(["greet", "weather"]);
  });
});
