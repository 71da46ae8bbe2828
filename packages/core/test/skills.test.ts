import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentDefinition,
  BasicToolRunner,
  InvalidSkillError,
  type LoadSkillsOptions,
  loadSkills,
  type ModelSource,
  renderSkillsPrompt,
  runAgentLoop,
  type Skill,
  skillsForAgent,
  userInvocableSkills,
  withSkills,
} from "../src/index.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/skills/", import.meta.url));
const WORKSPACE = join(FIXTURES, "workspace");
const BUNDLED = join(FIXTURES, "bundled");

// Real binaries on a real PATH: a temp directory with executables, and one without.
let binDir: string;
let emptyDir: string;

beforeAll(async () => {
  binDir = await mkdtemp(join(tmpdir(), "beamclaw-skills-bin-"));
  emptyDir = await mkdtemp(join(tmpdir(), "beamclaw-skills-empty-"));
  for (const name of ["bc-fixture-jq", "bc-fixture-podman"]) {
    await writeFile(join(binDir, name), "#!/bin/sh\nexit 0\n");
    await chmod(join(binDir, name), 0o755);
  }
  // Present but not executable: does not count as installed.
  await writeFile(join(binDir, "bc-fixture-docker"), "not a program");
  await chmod(join(binDir, "bc-fixture-docker"), 0o644);
});

afterAll(async () => {
  await rm(binDir, { recursive: true, force: true });
  await rm(emptyDir, { recursive: true, force: true });
});

/** Everything met on linux: the binaries on PATH, the token set, the config on. */
function machine(patch: Partial<LoadSkillsOptions> = {}): LoadSkillsOptions {
  return {
    dirs: [WORKSPACE, BUNDLED],
    platform: "linux",
    env: { PATH: binDir, BC_FIXTURE_TOKEN: "t0k3n" },
    config: { browser: { enabled: true } },
    ...patch,
  };
}

const names = (skills: Array<{ name: string }>) => skills.map((s) => s.name);
const gatedReason = async (options: LoadSkillsOptions, name: string) =>
  (await loadSkills(options)).gated.find((g) => g.name === name)?.reason;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("loadSkills", () => {
  it("loads every skill whose requirements are met, sorted by name", async () => {
    const { skills, gated } = await loadSkills(machine());
    expect(names(skills)).toEqual([
      "always-on",
      "container",
      "deploy",
      "json-query",
      "needs-config",
      "needs-token",
      "notes",
      "openclaw-style",
      "summarize",
    ]);
    expect(names(gated)).toEqual(["mac-only"]);
  });

  it("an earlier directory wins a name clash; the later copy is reported as shadowed", async () => {
    const { skills, shadowed } = await loadSkills(machine());
    const summarize = skills.find((s) => s.name === "summarize")!;
    expect(summarize.description).toBe("Summarize long documents (workspace version).");
    expect(summarize.dir).toBe(join(WORKSPACE, "summarize"));
    expect(summarize.root).toBe(WORKSPACE);
    expect(shadowed).toEqual([
      { name: "summarize", dir: join(BUNDLED, "summarize"), by: join(WORKSPACE, "summarize") },
    ]);

    const reversed = await loadSkills(machine({ dirs: [BUNDLED, WORKSPACE] }));
    expect(reversed.skills.find((s) => s.name === "summarize")!.description).toBe(
      "Summarize long documents (bundled version).",
    );
  });

  it("reads the frontmatter flags, the body, and takes the directory name when name is absent", async () => {
    const { skills } = await loadSkills(machine());
    const byName = new Map(skills.map((s) => [s.name, s]));
    expect(byName.get("deploy")).toMatchObject({
      userInvocable: true,
      disableModelInvocation: true,
      body: "Run `make deploy ENV=staging` and report the URL.",
      file: join(WORKSPACE, "deploy", "SKILL.md"),
    });
    expect(byName.get("notes")).toMatchObject({
      name: "notes",
      userInvocable: false,
      disableModelInvocation: false,
    });
    expect(byName.get("summarize")!.body).toBe(
      "# Summarize\n\nSummarize in three bullet points, workspace style.",
    );
  });

  it("gates a skill off when a required binary is not on PATH", async () => {
    expect(
      await gatedReason(machine({ env: { PATH: emptyDir, BC_FIXTURE_TOKEN: "x" } }), "json-query"),
    ).toBe("missing binary bc-fixture-jq");
    expect(await gatedReason(machine(), "json-query")).toBeUndefined();
  });

  it("needs only one of anyBins, and a non-executable file does not count", async () => {
    expect(await gatedReason(machine(), "container")).toBeUndefined();
    const onlyDocker = await mkdtemp(join(tmpdir(), "beamclaw-skills-docker-"));
    try {
      await writeFile(join(onlyDocker, "bc-fixture-docker"), "not a program");
      expect(await gatedReason(machine({ env: { PATH: onlyDocker } }), "container")).toBe(
        "missing binary bc-fixture-docker or bc-fixture-podman",
      );
    } finally {
      await rm(onlyDocker, { recursive: true, force: true });
    }
  });

  it("gates a skill off on another OS", async () => {
    expect(await gatedReason(machine({ platform: "linux" }), "mac-only")).toBe(
      "os darwin required",
    );
    expect(await gatedReason(machine({ platform: "darwin" }), "mac-only")).toBeUndefined();
  });

  it("gates a skill off when a required env var is unset or empty", async () => {
    expect(await gatedReason(machine({ env: { PATH: binDir } }), "needs-token")).toBe(
      "env BC_FIXTURE_TOKEN not set",
    );
    expect(
      await gatedReason(machine({ env: { PATH: binDir, BC_FIXTURE_TOKEN: "" } }), "needs-token"),
    ).toBe("env BC_FIXTURE_TOKEN not set");
  });

  it("gates a skill off when a required config path is not truthy", async () => {
    expect(await gatedReason(machine({ config: {} }), "needs-config")).toBe(
      "config browser.enabled not set",
    );
    expect(
      await gatedReason(machine({ config: { browser: { enabled: false } } }), "needs-config"),
    ).toBe("config browser.enabled not set");
  });

  it("reads OpenClaw's metadata.openclaw requirements and reports every unmet one", async () => {
    const bare = machine({ platform: "darwin", env: { PATH: emptyDir } });
    const { gated } = await loadSkills(bare);
    expect(gated.find((g) => g.name === "openclaw-style")).toMatchObject({
      dir: join(BUNDLED, "openclaw-style"),
      reasons: [
        "os linux required",
        "missing binary bc-fixture-jq",
        "env BC_FIXTURE_TOKEN not set",
      ],
      reason: "os linux required; missing binary bc-fixture-jq; env BC_FIXTURE_TOKEN not set",
    });
  });

  it("always: true loads a skill whatever its requirements", async () => {
    const { skills } = await loadSkills(machine({ env: { PATH: emptyDir } }));
    expect(names(skills)).toContain("always-on");
  });

  it("skips a directory that does not exist and one without SKILL.md", async () => {
    const { skills } = await loadSkills(
      machine({ dirs: [join(FIXTURES, "no-such-dir"), BUNDLED] }),
    );
    expect(names(skills)).not.toContain("not-a-skill");
    expect(names(skills)).toContain("json-query");
  });

  it.each([
    ["bad-yaml", "broken", "frontmatter", /invalid YAML \(line \d+, column \d+\)/],
    ["wrong-type", "wrong-type", "user-invocable", /expected boolean/],
    ["no-frontmatter", "plain", "frontmatter", /must start with YAML frontmatter/],
    ["unknown-requirement", "typo", "requires.bin", /unknown field/],
    ["missing-description", "terse", "description", /required/],
    ["bad-os", "windows", "requires.os.0", /darwin.*linux.*win32/],
  ])(
    "a malformed SKILL.md (%s) rejects with InvalidSkillError naming the file and the field",
    async (root, dir, field, problem) => {
      const file = join(FIXTURES, "invalid", root, dir, "SKILL.md");
      const error = await rejection(loadSkills({ dirs: [join(FIXTURES, "invalid", root)] }));
      expect(InvalidSkillError.isInstance(error)).toBe(true);
      expect(error).toMatchObject({ code: "INVALID_SKILL", file, field });
      expect((error as Error).message.startsWith(`${file}: ${field}`)).toBe(true);
      expect((error as Error).message).toMatch(problem);
    },
  );

  it("with strict: false, malformed skills are reported and the rest still load", async () => {
    const invalidRoots = ["bad-yaml", "wrong-type", "no-frontmatter"].map((r) =>
      join(FIXTURES, "invalid", r),
    );
    const { skills, invalid } = await loadSkills(
      machine({ dirs: [...invalidRoots, BUNDLED], strict: false }),
    );
    expect(invalid.map((e) => e.file)).toEqual([
      join(FIXTURES, "invalid", "bad-yaml", "broken", "SKILL.md"),
      join(FIXTURES, "invalid", "wrong-type", "wrong-type", "SKILL.md"),
      join(FIXTURES, "invalid", "no-frontmatter", "plain", "SKILL.md"),
    ]);
    expect(names(skills)).toContain("summarize");
  });

  it("a SKILL.md over maxFileBytes is invalid", async () => {
    const error = await rejection(loadSkills(machine({ maxFileBytes: 50 })));
    expect(error).toMatchObject({ code: "INVALID_SKILL" });
    expect((error as Error).message).toMatch(/over the 50-byte limit/);
  });
});

describe("skills in the agent's prompt", () => {
  let skills: Skill[];
  beforeAll(async () => {
    skills = (await loadSkills(machine())).skills;
  });

  it("skillsForAgent: all when omitted or '*', none for [], else only the named ones", () => {
    expect(skillsForAgent(skills)).toHaveLength(skills.length);
    expect(skillsForAgent(skills, { allow: ["*"] })).toHaveLength(skills.length);
    expect(skillsForAgent(skills, { allow: [] })).toEqual([]);
    expect(names(skillsForAgent(skills, { allow: ["summarize", "deploy", "no-such"] }))).toEqual([
      "deploy",
      "summarize",
    ]);
  });

  it("renders each model-visible skill with its description, directory and instructions", () => {
    const texts = renderSkillsPrompt(skillsForAgent(skills, { allow: ["summarize", "notes"] }));
    expect(texts).toEqual([
      [
        "## Skill: notes",
        "Keep running notes in NOTES.md.",
        `Directory: ${join(WORKSPACE, "notes")}`,
        "",
        "Append a dated line to NOTES.md after each finished task.",
      ].join("\n"),
      [
        "## Skill: summarize",
        "Summarize long documents (workspace version).",
        `Directory: ${join(WORKSPACE, "summarize")}`,
        "",
        "# Summarize",
        "",
        "Summarize in three bullet points, workspace style.",
      ].join("\n"),
    ]);
  });

  it("a skill with disable-model-invocation is left out of the prompt but stays user-invocable", () => {
    const texts = renderSkillsPrompt(skills).join("\n");
    expect(texts).not.toMatch(/deploy/i);
    expect(names(userInvocableSkills(skills))).toContain("deploy");
    expect(names(userInvocableSkills(skills))).not.toContain("notes");
  });

  it("the index format lists name, description and file in one text", () => {
    const [index, ...rest] = renderSkillsPrompt(
      skillsForAgent(skills, { allow: ["summarize", "deploy"] }),
      {
        format: "index",
      },
    );
    expect(rest).toEqual([]);
    expect(index).toBe(
      [
        "## Skills",
        "Before a task one of these skills covers, read its SKILL.md and follow it.",
        `- summarize: Summarize long documents (workspace version). (${join(WORKSPACE, "summarize", "SKILL.md")})`,
      ].join("\n"),
    );
  });

  it("withSkills puts the eligible, allowed skills into the system prompt the model receives", async () => {
    const base: AgentDefinition = {
      id: "main",
      model: "prov/model-a",
      systemPrompt: "You are terse.",
      skills: ["House rules."],
    };
    const agent = withSkills(base, skills, { allow: ["notes", "mac-only", "deploy"] });
    const systems: Array<string | undefined> = [];
    const source: ModelSource = {
      async *stream(request) {
        systems.push(request.system);
        yield { type: "text-delta", text: "ok" };
        yield { type: "finish", reason: "stop" };
      },
    };
    const result = await runAgentLoop({
      runId: "run-1",
      sessionKey: "agent:main:main",
      agent,
      models: ["prov/model-a"],
      history: [],
      inputs: [{ text: "hi" }],
      source,
      tools: new BasicToolRunner(),
      signal: new AbortController().signal,
      emit: () => {},
      persist: async () => {},
      takeSteered: () => [],
    });
    expect(result.status).toBe("completed");
    // mac-only is gated off on linux; deploy is hidden from the model.
    expect(systems).toEqual([
      [
        "You are terse.",
        "House rules.",
        `## Skill: notes\nKeep running notes in NOTES.md.\nDirectory: ${join(WORKSPACE, "notes")}\n\nAppend a dated line to NOTES.md after each finished task.`,
      ].join("\n\n"),
    ]);
  });
});
