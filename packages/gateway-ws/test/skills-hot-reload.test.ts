/**
 * `beamclaw gateway` and its skill directories: a `SKILL.md` added, edited or removed reaches
 * the agents' prompts without a restart (not only a change of `beamclaw.yaml`); a broken edit
 * keeps the skills loaded before; the limits and case-insensitive names of `skills.*` apply;
 * `stop()` closes the watchers. Real files, a real gateway; waits are for its log lines.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { closeClients, TestClient } from "./support.js";

const TOKEN = "skills-hot-reload-token-0123456789";
const dirs: string[] = [];
const started: StartedGateway[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function yaml(skills: string): string {
  return [
    "store: { kind: memory }",
    'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
    `skills: ${skills}`,
    "agents: { main: { model: local/m } }",
    "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
    "",
  ].join("\n");
}

function skillText(name: string, body: string): string {
  return `---\nname: ${name}\ndescription: the ${name} skill\n---\n${body}\n`;
}

async function skill(root: string, dirName: string, text: string): Promise<string> {
  await mkdir(join(root, dirName), { recursive: true });
  const file = join(root, dirName, "SKILL.md");
  await writeFile(file, text);
  return file;
}

/** The gateway's log, with a wait for the next line that contains a text. */
class LogLines {
  readonly lines: string[] = [];
  #waiting: Array<{ text: string; resolve: (line: string) => void }> = [];
  readonly sink = (line: string): void => {
    this.lines.push(line);
    for (const w of this.#waiting.filter((w) => line.includes(w.text))) {
      this.#waiting.splice(this.#waiting.indexOf(w), 1);
      w.resolve(line);
    }
  };
  /** The next line (from now) that contains `text`. */
  next(text: string): Promise<string> {
    return new Promise((resolve) => this.#waiting.push({ text, resolve }));
  }
}

async function start(skills: string, before: (root: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "bc-skills-hot-"));
  dirs.push(dir);
  const root = join(dir, "skills");
  await mkdir(root);
  await before(root);
  const configPath = join(dir, "beamclaw.yaml");
  await writeFile(configPath, yaml(skills));
  const log = new LogLines();
  const gateway = await startFromConfig({
    configPath,
    env: { GW_TOKEN: TOKEN },
    port: 0,
    logSink: log.sink,
  });
  started.push(gateway);
  return { gateway, root, log };
}

/** The skill texts in the prompt of agent `main`. */
function prompt(gateway: StartedGateway): string {
  return (gateway.runtime.agents.find((a) => a.id === "main")?.skills ?? []).join("\n");
}

/** Open `fs.watch` handles, once the handles closed so far have finished closing. */
async function openWatchHandles(): Promise<number> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;
}

const RELOADED = "skills: reloaded from skills.dirs";

describe("beamclaw gateway: skills follow their SKILL.md files", () => {
  it("an edited, an added and a removed SKILL.md reach the agent's prompt without a restart", async () => {
    let deploy = "";
    const { gateway, root, log } = await start("{ dirs: [./skills] }", async (root) => {
      deploy = await skill(root, "deploy", skillText("deploy", "Deploy version one."));
    });
    expect(prompt(gateway)).toContain("Deploy version one.");

    let reloaded = log.next(RELOADED);
    await writeFile(deploy, skillText("deploy", "Deploy version two."));
    await reloaded;
    expect(prompt(gateway)).toContain("Deploy version two.");
    expect(prompt(gateway)).not.toContain("Deploy version one.");

    reloaded = log.next(RELOADED);
    await skill(root, "rollback", skillText("rollback", "Roll it back."));
    await reloaded;
    expect(prompt(gateway)).toContain("Roll it back.");

    reloaded = log.next(RELOADED);
    await rm(join(root, "deploy"), { recursive: true });
    await reloaded;
    expect(prompt(gateway)).not.toContain("Deploy version two.");
    expect(prompt(gateway)).toContain("Roll it back.");

    // skills.status reports the reloaded set.
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    const status = await client.request("skills.status", { agentId: "main" });
    expect((status.skills as Array<{ name: string }>).map((s) => s.name)).toEqual(["rollback"]);
  }, 15_000);

  it("a SKILL.md saved broken keeps the skill as it was, and the failure is logged", async () => {
    let deploy = "";
    const { gateway, log } = await start("{ dirs: [./skills] }", async (root) => {
      deploy = await skill(root, "deploy", skillText("deploy", "Deploy carefully."));
    });
    const failed = log.next("skills not reloaded");
    await writeFile(deploy, "---\nname: [broken\n---\nhalf an edit\n");
    expect(await failed).toContain(deploy);
    expect(prompt(gateway)).toContain("Deploy carefully.");

    const reloaded = log.next(RELOADED);
    await writeFile(deploy, skillText("deploy", "Deploy even more carefully."));
    await reloaded;
    expect(prompt(gateway)).toContain("Deploy even more carefully.");
  }, 15_000);

  it("skills.maxSkills leaves the skills over it out, and logs which", async () => {
    const { gateway, log } = await start("{ dirs: [./skills], maxSkills: 1 }", async (root) => {
      await skill(root, "alpha", skillText("alpha", "Alpha body."));
      await skill(root, "beta", skillText("beta", "Beta body."));
    });
    expect(prompt(gateway)).toContain("Alpha body.");
    expect(prompt(gateway)).not.toContain("Beta body.");
    expect(log.lines.some((l) => l.includes("skills not loaded") && l.includes("beta"))).toBe(true);
  }, 15_000);

  it("Deploy and deploy load as one skill, with the clash logged naming both files", async () => {
    let upper = "";
    let lower = "";
    const { gateway, log } = await start("{ dirs: [./skills] }", async (root) => {
      upper = await skill(root, "Deploy", skillText("Deploy", "Upper body."));
      lower = await skill(root, "deploy", skillText("deploy", "Lower body."));
    });
    expect(prompt(gateway)).toContain("Upper body.");
    expect(prompt(gateway)).not.toContain("Lower body.");
    const clash = log.lines.find((l) => l.includes("case-insensitive"));
    expect(clash).toContain(upper);
    expect(clash).toContain(lower);
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    const status = await client.request("skills.status", { agentId: "main" });
    expect((status.skills as Array<{ name: string }>).map((s) => s.name)).toEqual(["Deploy"]);
    expect((status.clashes as Array<{ files: string[] }>).map((c) => c.files)).toEqual([
      [upper, lower],
    ]);
  }, 15_000);

  it("stop() closes the skill directories' watchers", async () => {
    const before = await openWatchHandles();
    const { gateway } = await start("{ dirs: [./skills] }", async (root) => {
      await skill(root, "deploy", skillText("deploy", "Deploy."));
    });
    // The config file's directory, the skills directory and the skill's directory.
    expect(await openWatchHandles()).toBeGreaterThanOrEqual(before + 3);
    started.splice(started.indexOf(gateway), 1);
    await gateway.stop();
    expect(await openWatchHandles()).toBe(before);
  }, 15_000);
});
