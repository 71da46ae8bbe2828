/**
 * Where `loadSkills` reads from, and what it accepts as options: a skill directory may be a
 * link (a skill kept elsewhere), but its `SKILL.md` must stay inside that directory, so a link
 * to some other file (`../../secret.md`) is not read into an agent's prompt; and options of the
 * wrong kind are refused with a typed error instead of turning a limit off.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, InvalidSkillError, loadSkills } from "../src/index.js";

let base: string;
beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "beamclaw-skills-paths-"));
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const SKILL = (name: string) =>
  `---\nname: ${name}\ndescription: The ${name} skill.\n---\nDo ${name}.\n`;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("skill paths", () => {
  it("a skill directory that is a link to a skill kept elsewhere loads", async () => {
    const root = join(base, "skills");
    await mkdir(join(base, "store", "linked"), { recursive: true });
    await writeFile(join(base, "store", "linked", "SKILL.md"), SKILL("linked"));
    await mkdir(root);
    await symlink(join(base, "store", "linked"), join(root, "linked"));
    const { skills } = await loadSkills({ dirs: [root] });
    expect(skills.map((s) => s.name)).toEqual(["linked"]);
    expect(skills[0]!.body).toBe("Do linked.");
  });

  it("a SKILL.md that links out of its skill directory is an InvalidSkillError naming it, and is not read", async () => {
    const root = join(base, "skills");
    await mkdir(join(root, "sneaky"), { recursive: true });
    // Outside every skill directory: a file that happens to parse as a skill.
    await writeFile(join(base, "private.md"), SKILL("sneaky").replace("Do sneaky.", "TOP SECRET"));
    await symlink(join("..", "..", "private.md"), join(root, "sneaky", "SKILL.md"));
    await mkdir(join(root, "fine"));
    await writeFile(join(root, "fine", "SKILL.md"), SKILL("fine"));

    const error = await rejection(loadSkills({ dirs: [root] }));
    expect(InvalidSkillError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ file: join(root, "sneaky", "SKILL.md") });
    expect((error as Error).message).toMatch(/outside its skill directory/);

    const { skills, invalid } = await loadSkills({ dirs: [root], strict: false });
    expect(skills.map((s) => s.name)).toEqual(["fine"]);
    expect(invalid.map((e) => e.file)).toEqual([join(root, "sneaky", "SKILL.md")]);
    expect(JSON.stringify(skills)).not.toContain("TOP SECRET");
  });

  it("a SKILL.md linking to another file inside its own directory loads", async () => {
    const root = join(base, "skills");
    await mkdir(join(root, "own"), { recursive: true });
    await writeFile(join(root, "own", "README.md"), SKILL("own"));
    await symlink("README.md", join(root, "own", "SKILL.md"));
    const { skills } = await loadSkills({ dirs: [root] });
    expect(skills.map((s) => s.name)).toEqual(["own"]);
  });
});

describe("loadSkills options", () => {
  it.each([
    ["maxFileBytes NaN", { maxFileBytes: Number.NaN }],
    ["maxFileBytes negative", { maxFileBytes: -1 }],
    ["maxFileBytes a string", { maxFileBytes: "1mb" }],
    ["a directory that is not a string", { dirs: [42] }],
  ])("refuses %s with InvalidArgumentError", async (_, patch) => {
    const error = await rejection(loadSkills({ dirs: [base], ...(patch as object) }));
    expect(error).toBeInstanceOf(InvalidArgumentError);
  });
});
