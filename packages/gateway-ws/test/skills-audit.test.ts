/**
 * `skills.status` over a real socket when a skills directory holds a file that is not UTF-8:
 * it is reported as invalid (naming the file), not loaded with replacement characters into
 * an agent's prompt, and the other skills are still there.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startFromConfig } from "../src/cli/bootstrap.js";
import { closeClients, TestClient } from "./support.js";

const TOKEN = "skills-audit-token-0123456789abcdef";
/** Undone after each test, last first: the temp directory, then the gateway. */
const undo: Array<() => Promise<void>> = [];

afterEach(async () => {
  await closeClients();
  while (undo.length > 0) await undo.pop()?.();
});

describe("skills.status: a SKILL.md that is not UTF-8", () => {
  it("is listed under invalid with its file; the agent's prompt and the other skills are intact", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-skills-audit-gw-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, "skills", "greet"), { recursive: true });
    await writeFile(
      join(dir, "skills", "greet", "SKILL.md"),
      "---\ndescription: Greets.\n---\nSay hi.\n",
    );
    const latin1 = join(dir, "skills", "cafe", "SKILL.md");
    await mkdir(join(dir, "skills", "cafe"), { recursive: true });
    await writeFile(latin1, Buffer.from("---\ndescription: caf\xe9 menu\n---\nOrder.\n", "latin1"));
    const configPath = join(dir, "beamclaw.yaml");
    await writeFile(
      configPath,
      [
        "store: { kind: memory }",
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "skills: { dirs: [./skills] }",
        "agents: { main: { model: local/m } }",
        "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
        "",
      ].join("\n"),
    );
    const gateway = await startFromConfig({
      configPath,
      env: { GW_TOKEN: TOKEN },
      port: 0,
      logSink: () => undefined,
    });
    undo.push(() => gateway.stop());
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    const status = await client.request("skills.status", { agentId: "main" });
    expect((status.skills as Array<{ name: string }>).map((s) => s.name)).toEqual(["greet"]);
    expect(status.invalid).toEqual([
      { file: latin1, message: expect.stringMatching(/is not UTF-8 text/) },
    ]);
    const prompt = (gateway.runtime.agents.find((a) => a.id === "main")?.skills ?? []).join("\n");
    expect(prompt).toContain("Say hi.");
    expect(prompt).not.toContain("\uFFFD");
  });
});
