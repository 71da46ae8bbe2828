/**
 * `SkillsWatcher`: adding, editing or removing a `SKILL.md` updates the skills without a
 * restart; a failed reload keeps the last good set and reports the error; `stop()` leaves no
 * watcher open. Real files in temp directories; every wait is for an event.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  InvalidSkillError,
  NoProcessError,
  SkillsWatcher,
  type SkillsWatcherEvents,
} from "../src/index.js";

const roots: string[] = [];
const watchers: SkillsWatcher[] = [];
afterEach(async () => {
  for (const watcher of watchers.splice(0)) await watcher.stop();
  for (const root of roots.splice(0)) await rm(root, { recursive: true, force: true });
});

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "bc-skill-watch-"));
  roots.push(root);
  return root;
}

async function skill(root: string, name: string, body: string): Promise<string> {
  await mkdir(join(root, name), { recursive: true });
  const file = join(root, name, "SKILL.md");
  await writeFile(file, `---\nname: ${name}\ndescription: the ${name} skill\n---\n${body}\n`);
  return file;
}

async function started(options: ConstructorParameters<typeof SkillsWatcher>[0]) {
  const watcher = new SkillsWatcher({ debounceMs: 20, ...options });
  watchers.push(watcher);
  return watcher.start();
}

/** The next `event` of `watcher`. */
function next<E extends keyof SkillsWatcherEvents>(
  watcher: SkillsWatcher,
  event: E,
): Promise<Parameters<SkillsWatcherEvents[E]>[0]> {
  return new Promise((resolve) => {
    const off = watcher.on(event, ((payload: Parameters<SkillsWatcherEvents[E]>[0]) => {
      off();
      resolve(payload);
    }) as SkillsWatcherEvents[E]);
  });
}

/** Open `fs.watch` handles, once the handles closed so far have finished closing. */
async function openWatchHandles(): Promise<number> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;
}

const bodies = (watcher: SkillsWatcher) =>
  Object.fromEntries(watcher.current.skills.map((s) => [s.name, s.body.trim()]));

describe("SkillsWatcher", () => {
  it("applies an edited SKILL.md", async () => {
    const root = await tempRoot();
    const file = await skill(root, "deploy", "Version one.");
    const watcher = await started({ dirs: [root] });
    expect(bodies(watcher)).toEqual({ deploy: "Version one." });

    const changed = next(watcher, "skills.changed");
    await writeFile(file, "---\nname: deploy\ndescription: the deploy skill\n---\nVersion two.\n");
    const { result, previous, cause } = await changed;

    expect(cause).toBe("watch");
    expect(previous.skills[0]?.body.trim()).toBe("Version one.");
    expect(result.skills[0]?.body.trim()).toBe("Version two.");
    expect(bodies(watcher)).toEqual({ deploy: "Version two." });
  });

  it("applies an edit saved the way editors do (a temporary file renamed over it)", async () => {
    const root = await tempRoot();
    const file = await skill(root, "deploy", "Version one.");
    const watcher = await started({ dirs: [root] });

    const changed = next(watcher, "skills.changed");
    const temp = join(root, "deploy", ".SKILL.md.swp");
    await writeFile(temp, "---\nname: deploy\ndescription: the deploy skill\n---\nSaved.\n");
    await rename(temp, file);
    await changed;
    expect(bodies(watcher)).toEqual({ deploy: "Saved." });
  });

  it("picks up an added skill and drops a removed one", async () => {
    const root = await tempRoot();
    await skill(root, "deploy", "Deploy.");
    const watcher = await started({ dirs: [root] });

    const added = next(watcher, "skills.changed");
    await skill(root, "rollback", "Roll back.");
    await added;
    expect(bodies(watcher)).toEqual({ deploy: "Deploy.", rollback: "Roll back." });

    const removed = next(watcher, "skills.changed");
    await rm(join(root, "deploy"), { recursive: true });
    await removed;
    expect(bodies(watcher)).toEqual({ rollback: "Roll back." });
  });

  it("watches a skills directory that does not exist yet", async () => {
    const parent = await tempRoot();
    const root = join(parent, "skills");
    const watcher = await started({ dirs: [root] });
    expect(watcher.current.skills).toEqual([]);

    const changed = next(watcher, "skills.changed");
    await skill(root, "deploy", "Deploy.");
    // The directory and the skill may arrive as two changes: wait until the skill is there.
    let { result } = await changed;
    while (result.skills.length === 0) ({ result } = await next(watcher, "skills.changed"));
    expect(bodies(watcher)).toEqual({ deploy: "Deploy." });
  });

  it("keeps the last good set when a loaded SKILL.md turns malformed, and reports it", async () => {
    const root = await tempRoot();
    const file = await skill(root, "deploy", "Good.");
    const watcher = await started({ dirs: [root] });
    let changes = 0;
    watcher.on("skills.changed", () => changes++);

    const failed = next(watcher, "skills.error");
    await writeFile(file, "---\nname: [not, a, name]\n---\nBroken.\n");
    const { error, cause } = await failed;
    expect(cause).toBe("watch");
    expect(InvalidSkillError.isInstance(error)).toBe(true);
    expect(error.message).toContain(file);
    expect(bodies(watcher)).toEqual({ deploy: "Good." });
    expect(changes).toBe(0);

    // Fixed again: applied.
    const fixed = next(watcher, "skills.changed");
    await writeFile(file, "---\nname: deploy\ndescription: the deploy skill\n---\nBetter.\n");
    await fixed;
    expect(bodies(watcher)).toEqual({ deploy: "Better." });
  });

  it("a non-strict load keeps the last good version too, while a new malformed skill is only reported", async () => {
    const root = await tempRoot();
    const file = await skill(root, "deploy", "Good.");
    const watcher = await started({ dirs: [root], loadOptions: { strict: false } });

    const failed = next(watcher, "skills.error");
    await writeFile(file, "---\nname: [broken\n---\n");
    expect((await failed).error.message).toContain(file);
    expect(bodies(watcher)).toEqual({ deploy: "Good." });

    // Repaired, and a new broken skill next to it: the repair applies, the new one is listed.
    const changed = next(watcher, "skills.changed");
    await writeFile(file, "---\nname: deploy\ndescription: d\n---\nRepaired.\n");
    await mkdir(join(root, "other"));
    await writeFile(join(root, "other", "SKILL.md"), "---\nname: [broken\n---\n");
    let { result } = await changed;
    while (result.invalid.length === 0) ({ result } = await next(watcher, "skills.changed"));
    expect(bodies(watcher)).toEqual({ deploy: "Repaired." });
    expect(result.invalid.map((e) => e.file)).toEqual([join(root, "other", "SKILL.md")]);
  });

  it("a load that throws keeps the last good set and reports the error", async () => {
    const root = await tempRoot();
    await skill(root, "deploy", "Good.");
    let fail = false;
    const { loadSkills } = await import("../src/index.js");
    const watcher = await started({
      dirs: [root],
      load: async (dirs) => {
        if (fail) throw new Error("disk on fire");
        return loadSkills({ dirs });
      },
    });
    fail = true;
    const failed = next(watcher, "skills.error");
    await skill(root, "rollback", "Roll back.");
    expect((await failed).error.message).toBe("disk on fire");
    expect(bodies(watcher)).toEqual({ deploy: "Good." });
  });

  it("reload(dirs) switches directories at once and watches the new ones", async () => {
    const first = await tempRoot();
    const second = await tempRoot();
    await skill(first, "deploy", "Deploy.");
    await skill(second, "weather", "Weather.");
    const watcher = await started({ dirs: [first] });

    const reloaded = next(watcher, "skills.changed");
    const result = await watcher.reload([second]);
    expect((await reloaded).cause).toBe("reload");
    expect(result).toBe(watcher.current);
    expect(bodies(watcher)).toEqual({ weather: "Weather." });
    expect(watcher.dirs).toEqual([second]);

    const changed = next(watcher, "skills.changed");
    await skill(second, "forecast", "Forecast.");
    await changed;
    expect(bodies(watcher)).toEqual({ forecast: "Forecast.", weather: "Weather." });
  });

  it("stop() closes every watcher; reload() after it is refused", async () => {
    const before = await openWatchHandles();
    const root = await tempRoot();
    await skill(root, "deploy", "Deploy.");
    await skill(root, "rollback", "Roll back.");
    const watcher = new SkillsWatcher({ dirs: [root, join(root, "missing")], debounceMs: 20 });
    await watcher.start();
    // The search directory and its two skill directories.
    expect(await openWatchHandles()).toBeGreaterThanOrEqual(before + 3);

    await watcher.stop();
    expect(await openWatchHandles()).toBe(before);
    await expect(watcher.reload()).rejects.toSatisfy((e: unknown) => NoProcessError.isInstance(e));
  });

  it("a failed start leaves nothing open", async () => {
    const before = await openWatchHandles();
    const root = await tempRoot();
    await mkdir(join(root, "bad"));
    await writeFile(join(root, "bad", "SKILL.md"), "---\nname: [broken\n---\n");
    const watcher = new SkillsWatcher({ dirs: [root] });
    await expect(watcher.start()).rejects.toSatisfy((e: unknown) =>
      InvalidSkillError.isInstance(e),
    );
    expect(await openWatchHandles()).toBe(before);
  });
});
