/**
 * `BubblewrapSandbox({ hide })` covers directories with an empty read-only tmpfs. A hidden
 * directory inside the working directory (a project's secrets folder) must stay hidden, and
 * the command must still run: mounting the working directory afterwards must not lay the
 * real directory back over the cover, nor make bubblewrap refuse to start. And a working
 * directory that is itself one of the hidden directories (the default `hide` is the home
 * directory, and the default root is `process.cwd()`, often the home directory) stays visible,
 * as documented, and writable: it is the one directory a sandboxed command may write to.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackgroundProcessRegistry, BubblewrapSandbox } from "./fixtures/exec/api.js";
import { runToEnd, tempRoot } from "./fixtures/exec/support.js";

const root = tempRoot();
const work = path.join(root.dir, "work");
const secrets = path.join(work, "secrets");
mkdirSync(secrets, { recursive: true });
writeFileSync(path.join(secrets, "api-key"), "TOP-SECRET-VALUE\n");
const sandbox = new BubblewrapSandbox({ roots: [work], hide: [secrets, "/run"] });
const home = path.join(root.dir, "home");
mkdirSync(home);
writeFileSync(path.join(home, "notes.txt"), "visible\n");
const homeSandbox = new BubblewrapSandbox({ roots: [home], hide: [home, "/run"] });
const registry = new BackgroundProcessRegistry({ killGraceMs: 300, stopGraceMs: 300 });

beforeAll(async () => {
  await registry.start();
  await sandbox.probe();
  await homeSandbox.probe();
});
afterAll(async () => {
  await registry.stop();
  root.cleanup();
});

function run(script: string, inside: BubblewrapSandbox = sandbox) {
  return runToEnd(registry, inside, script);
}

describe("BubblewrapSandbox hiding a directory inside the working directory", () => {
  it("runs the command, with the directory empty and read-only inside", async () => {
    const result = await run(
      "ls -A secrets | wc -l; cat secrets/api-key 2>/dev/null || echo NO-KEY; " +
        "if (echo x > secrets/planted) 2>/dev/null; then echo WROTE; else echo DENIED; fi; " +
        "echo ok > written.txt",
    );
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split("\n")).toEqual(["0", "NO-KEY", "DENIED", ""]);
    expect(result.stdout).not.toContain("TOP-SECRET-VALUE");
    // The rest of the working directory is the real, writable one.
    expect(readFileSync(path.join(work, "written.txt"), "utf8")).toBe("ok\n");
  });

  it("puts the cover after the working directory's bind in the arguments", () => {
    const args = sandbox.arguments(work);
    const bind = args.indexOf("--bind");
    expect(args.slice(bind, bind + 7)).toEqual([
      "--bind",
      work,
      work,
      "--tmpfs",
      secrets,
      "--remount-ro",
      secrets,
    ]);
    expect(args.indexOf("/run")).toBeLessThan(bind);
  });
});

describe("BubblewrapSandbox whose working directory is a hidden directory", () => {
  it("keeps the working directory visible and writable", async () => {
    const result = await run("cat notes.txt && echo written > out.txt && echo done", homeSandbox);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("visible\ndone\n");
    expect(readFileSync(path.join(home, "out.txt"), "utf8")).toBe("written\n");
  });

  it("still hides the other hidden directories", async () => {
    const result = await run("ls -A /run | wc -l", homeSandbox);
    expect(result.stdout.trim()).toBe("0");
  });
});
