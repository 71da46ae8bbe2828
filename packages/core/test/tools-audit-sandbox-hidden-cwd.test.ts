/**
 * A `BubblewrapSandbox` whose working directory is itself one of the hidden directories (the
 * default `hide` is the home directory, and the default root is `process.cwd()`, which is
 * often the home directory): the working directory stays visible, as documented, and stays
 * writable — it is the one directory a sandboxed command may write to.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackgroundProcessRegistry, BubblewrapSandbox } from "./fixtures/exec/api.js";
import { tempRoot } from "./fixtures/exec/support.js";

const root = tempRoot();
const home = path.join(root.dir, "home");
mkdirSync(home);
writeFileSync(path.join(home, "notes.txt"), "visible\n");
const sandbox = new BubblewrapSandbox({ roots: [home], hide: [home, "/run"] });
const registry = new BackgroundProcessRegistry({ killGraceMs: 300, stopGraceMs: 300 });

beforeAll(async () => {
  await registry.start();
  await sandbox.probe();
});
afterAll(async () => {
  await registry.stop();
  root.cleanup();
});

async function run(script: string) {
  const { slug } = await registry.spawn(sandbox, {
    command: script,
    script,
    cwd: sandbox.resolveCwd(),
    env: sandbox.environment(),
  });
  const done = await registry.wait(slug);
  const output = registry.output(slug);
  await registry.remove(slug);
  return { ...done, ...output };
}

describe("BubblewrapSandbox whose working directory is a hidden directory", () => {
  it("keeps the working directory visible and writable", async () => {
    const result = await run("cat notes.txt && echo written > out.txt && echo done");
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("visible\ndone\n");
    expect(readFileSync(path.join(home, "out.txt"), "utf8")).toBe("written\n");
  });

  it("still hides the other hidden directories", async () => {
    const result = await run("ls -A /run | wc -l");
    expect(result.stdout.trim()).toBe("0");
  });
});
