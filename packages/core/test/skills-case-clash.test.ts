/**
 * Skill names are case-insensitive: `Deploy` and `deploy` do not load as two commands. The
 * clash is reported with a typed error naming both files, and the one found first is kept.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  loadSkills,
  SkillNameClashError,
  skillsForAgent,
  userInvocableSkills,
} from "../src/index.js";

const roots: string[] = [];
afterEach(async () => {
  for (const root of roots.splice(0)) await rm(root, { recursive: true, force: true });
});

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "bc-skill-case-"));
  roots.push(root);
  return root;
}

async function skill(root: string, dirName: string, name: string): Promise<string> {
  await mkdir(join(root, dirName), { recursive: true });
  const file = join(root, dirName, "SKILL.md");
  await writeFile(
    file,
    `---\nname: ${name}\ndescription: ${dirName} in ${root}\n---\nRun ${dirName}.\n`,
  );
  return file;
}

describe("skill names that differ only in case", () => {
  it("load once within one directory: the capitalised directory's, with the clash reported", async () => {
    const root = await tempRoot();
    const upper = await skill(root, "Deploy", "Deploy");
    const lower = await skill(root, "deploy", "deploy");

    const result = await loadSkills({ dirs: [root] });

    expect(result.skills.map((s) => s.name)).toEqual(["Deploy"]);
    expect(userInvocableSkills(result.skills)).toHaveLength(1);
    expect(result.clashes).toHaveLength(1);
    const clash = result.clashes[0]!;
    expect(SkillNameClashError.isInstance(clash)).toBe(true);
    expect(clash.code).toBe("SKILL_NAME_CLASH");
    expect(clash.files).toEqual([upper, lower]);
    expect(clash.kept).toEqual({ name: "Deploy", file: upper });
    expect(clash.dropped).toEqual({ name: "deploy", file: lower });
    expect(clash.message).toContain(upper);
    expect(clash.message).toContain(lower);
    expect(result.shadowed).toEqual([]);
  });

  it("the earlier directory wins across directories, whatever the case", async () => {
    const first = await tempRoot();
    const second = await tempRoot();
    const kept = await skill(first, "deploy", "deploy");
    const dropped = await skill(second, "DEPLOY", "DEPLOY");

    const result = await loadSkills({ dirs: [first, second] });

    expect(result.skills.map((s) => s.file)).toEqual([kept]);
    expect(result.clashes.map((c) => c.files)).toEqual([[kept, dropped]]);
  });

  it("the choice does not depend on the order the directories are listed in by the OS", async () => {
    const root = await tempRoot();
    // Frontmatter names clash while the directory names differ: the directory first by name wins.
    const a = await skill(root, "a-dir", "Ship");
    await skill(root, "b-dir", "ship");
    for (let i = 0; i < 3; i++) {
      const result = await loadSkills({ dirs: [root] });
      expect(result.skills.map((s) => s.file)).toEqual([a]);
    }
  });

  it("an exact duplicate in a later directory is still shadowed, not a clash", async () => {
    const first = await tempRoot();
    const second = await tempRoot();
    await skill(first, "deploy", "deploy");
    await skill(second, "deploy", "deploy");
    const result = await loadSkills({ dirs: [first, second] });
    expect(result.clashes).toEqual([]);
    expect(result.shadowed).toHaveLength(1);
  });

  it("an agent's selection matches names case-insensitively", async () => {
    const root = await tempRoot();
    await skill(root, "Deploy", "Deploy");
    const { skills } = await loadSkills({ dirs: [root] });
    expect(skillsForAgent(skills, { allow: ["deploy"] }).map((s) => s.name)).toEqual(["Deploy"]);
  });
});
