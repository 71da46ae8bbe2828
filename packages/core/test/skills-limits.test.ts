/**
 * Limits on how many skills, and how much skill text, a load puts in the prompt: skills over
 * them are left out and reported with a typed error naming each, in name order.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_SKILLS,
  InvalidArgumentError,
  loadSkills,
  renderSkillsPrompt,
  SkillLimitError,
} from "../src/index.js";

const roots: string[] = [];
afterEach(async () => {
  for (const root of roots.splice(0)) await rm(root, { recursive: true, force: true });
});

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "bc-skill-limits-"));
  roots.push(root);
  return root;
}

async function skill(root: string, name: string, body = `Run ${name}.`, extra = ""): Promise<void> {
  await mkdir(join(root, name), { recursive: true });
  await writeFile(
    join(root, name, "SKILL.md"),
    `---\nname: ${name}\ndescription: the ${name} skill\n${extra}---\n${body}\n`,
  );
}

describe("skill limits", () => {
  it("maxSkills keeps the first skills by name and reports the rest", async () => {
    const root = await tempRoot();
    // Created out of order: the order is by name, not by creation.
    for (const name of ["gamma", "alpha", "delta", "beta"]) await skill(root, name);

    const result = await loadSkills({ dirs: [root], maxSkills: 2 });

    expect(result.skills.map((s) => s.name)).toEqual(["alpha", "beta"]);
    expect(SkillLimitError.isInstance(result.overLimit)).toBe(true);
    expect(result.overLimit?.code).toBe("SKILL_LIMIT");
    expect(result.overLimit?.dropped).toEqual([
      { name: "delta", file: join(root, "delta", "SKILL.md"), limit: "maxSkills" },
      { name: "gamma", file: join(root, "gamma", "SKILL.md"), limit: "maxSkills" },
    ]);
    expect(result.overLimit?.message).toContain("delta");
    expect(result.overLimit?.message).toContain("gamma");
  });

  it(`loads at most ${DEFAULT_MAX_SKILLS} skills by default`, async () => {
    const root = await tempRoot();
    const names = Array.from(
      { length: DEFAULT_MAX_SKILLS + 2 },
      (_, i) => `s${String(i).padStart(3, "0")}`,
    );
    for (const name of names) await skill(root, name);

    const result = await loadSkills({ dirs: [root] });

    expect(DEFAULT_MAX_SKILLS).toBe(150);
    expect(result.skills).toHaveLength(DEFAULT_MAX_SKILLS);
    expect(result.overLimit?.dropped.map((d) => d.name)).toEqual(names.slice(DEFAULT_MAX_SKILLS));
  });

  it("maxPromptBytes stops at the first skill whose text would not fit", async () => {
    const root = await tempRoot();
    await skill(root, "a", "x".repeat(1_000));
    await skill(root, "b", "y".repeat(1_000));
    await skill(root, "c", "z");
    const all = await loadSkills({ dirs: [root] });
    const sizeOf = (name: string) =>
      Buffer.byteLength(renderSkillsPrompt(all.skills.filter((s) => s.name === name))[0]!, "utf8");

    const result = await loadSkills({ dirs: [root], maxPromptBytes: sizeOf("a") + 10 });

    expect(result.skills.map((s) => s.name)).toEqual(["a"]);
    expect(result.overLimit?.dropped.map((d) => [d.name, d.limit])).toEqual([
      ["b", "maxPromptBytes"],
      ["c", "maxPromptBytes"],
    ]);
    // All of it fits: nothing is left out.
    const fits = await loadSkills({
      dirs: [root],
      maxPromptBytes: sizeOf("a") + sizeOf("b") + sizeOf("c"),
    });
    expect(fits.skills).toHaveLength(3);
    expect(fits.overLimit).toBeUndefined();
  });

  it("a skill hidden from the model takes no prompt bytes", async () => {
    const root = await tempRoot();
    await skill(root, "hidden", "h".repeat(5_000), "disable-model-invocation: true\n");
    await skill(root, "shown", "s");
    const result = await loadSkills({ dirs: [root], maxPromptBytes: 1_000 });
    expect(result.skills.map((s) => s.name)).toEqual(["hidden", "shown"]);
    expect(result.overLimit).toBeUndefined();
  });

  it("gated skills do not count", async () => {
    const root = await tempRoot();
    await skill(root, "a", "a", "requires:\n  env: [BC_LIMIT_TEST_UNSET]\n");
    await skill(root, "b");
    const result = await loadSkills({ dirs: [root], maxSkills: 1, env: {} });
    expect(result.skills.map((s) => s.name)).toEqual(["b"]);
    expect(result.gated.map((g) => g.name)).toEqual(["a"]);
    expect(result.overLimit).toBeUndefined();
  });

  it.each([
    ["maxSkills 0", { maxSkills: 0 }],
    ["maxSkills 1.5", { maxSkills: 1.5 }],
    ["maxSkills a string", { maxSkills: "10" }],
    ["maxPromptBytes negative", { maxPromptBytes: -1 }],
    ["maxPromptBytes NaN", { maxPromptBytes: Number.NaN }],
  ])("rejects %s with InvalidArgumentError", async (_label, options) => {
    const root = await tempRoot();
    await expect(
      loadSkills({ dirs: [root], ...(options as Record<string, unknown>) }),
    ).rejects.toSatisfy((error: unknown) => InvalidArgumentError.isInstance(error));
  });
});
