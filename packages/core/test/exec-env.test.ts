import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BackgroundProcessRegistry,
  BasicToolRunner,
  BLOCKED_ENV_NAMES,
  BlockedEnvError,
  createExecTool,
  DEFAULT_EXEC_PATH,
  ExecRefusedError,
  GatewayHost,
  InvalidArgumentError,
  sanitizeEnv,
} from "./fixtures/exec/api.js";
import { tempRoot, toolContext } from "./fixtures/exec/support.js";

const root = tempRoot();
const registry = new BackgroundProcessRegistry();
beforeAll(async () => {
  await registry.start();
});
afterAll(async () => {
  await registry.stop();
  root.cleanup();
});

function failure(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

/** Runs `script` on `host` and returns its stdout. */
async function stdoutOf(host: GatewayHost, script: string, env?: Record<string, string>) {
  const { slug } = await registry.spawn(host, {
    command: script,
    script,
    cwd: host.resolveCwd(),
    env: host.environment(env),
  });
  await registry.wait(slug);
  const out = registry.output(slug).stdout;
  await registry.remove(slug);
  return out;
}

describe("the environment blocklist", () => {
  it.each(BLOCKED_ENV_NAMES)("refuses %s from a caller", (name) => {
    const error = failure(() => sanitizeEnv({ env: { [name]: "x" } }));
    expect(BlockedEnvError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "EXEC_ENV_BLOCKED", names: [name] });
  });

  it.each([
    "LD_AUDIT",
    "LD_DEBUG",
    "DYLD_LIBRARY_PATH",
    "DYLD_FRAMEWORK_PATH",
    "BASH_FUNC_ls",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_KEY_0",
    "GIT_CONFIG_PARAMETERS",
    "npm_config_script_shell",
    "ld_preload",
    "Node_Options",
  ])("refuses %s, a member of a blocked family or a different spelling", (name) => {
    expect(() => sanitizeEnv({ env: { [name]: "x" } })).toThrow(BlockedEnvError);
  });

  it("names every blocked variable of a request at once", () => {
    const error = failure(() =>
      sanitizeEnv({ env: { CI: "1", LD_PRELOAD: "/x.so", PATH: "/tmp", NODE_OPTIONS: "-r x" } }),
    );
    expect(error).toMatchObject({ names: ["LD_PRELOAD", "PATH", "NODE_OPTIONS"] });
  });

  it.each([
    ["a name starting with a digit", { "1X": "a" }],
    ["a name with a dash", { "A-B": "a" }],
    ["a name with =", { "A=B": "a" }],
    ["a value with a NUL byte", { A: "a\u0000b" }],
    ["a value that is not a string", { A: 1 }],
  ])("refuses %s as invalid", (_name, env) => {
    expect(() => sanitizeEnv({ env })).toThrow(InvalidArgumentError);
  });

  it("refuses a search path with relative or empty entries", () => {
    expect(() => sanitizeEnv({ path: "bin:/usr/bin" })).toThrow(InvalidArgumentError);
    expect(() => sanitizeEnv({ path: "/usr/bin::/bin" })).toThrow(InvalidArgumentError);
    expect(() => new GatewayHost({ roots: [root.dir], path: ".:/usr/bin" })).toThrow(
      InvalidArgumentError,
    );
  });

  it("gives the command the caller's harmless variables and the host's fixed PATH", async () => {
    const host = new GatewayHost({ roots: [root.dir] });
    const out = await stdoutOf(host, 'printf "%s|%s" "$CI" "$PATH"', { CI: "true" });
    expect(out).toBe(`true|${DEFAULT_EXEC_PATH}`);
  });

  it("does not pass on the host's secrets or loader variables", async () => {
    const host = new GatewayHost({
      roots: [root.dir],
      baseEnv: {
        HOME: "/home/agent",
        LANG: "C.UTF-8",
        LC_ALL: "C",
        PATH: "/evil/bin",
        LD_PRELOAD: "/nonexistent/evil.so",
        NODE_OPTIONS: "--require=/nonexistent/evil.js",
        ANTHROPIC_API_KEY: "sk-secret",
      },
    });
    const vars = new Map(
      (await stdoutOf(host, "env"))
        .trim()
        .split("\n")
        .map((l) => [l.split("=")[0]!, l.slice(l.indexOf("=") + 1)]),
    );
    expect(vars.get("HOME")).toBe("/home/agent");
    expect(vars.get("LANG")).toBe("C.UTF-8");
    expect(vars.get("LC_ALL")).toBe("C");
    expect(vars.get("PATH")).toBe(DEFAULT_EXEC_PATH);
    expect(vars.has("LD_PRELOAD")).toBe(false);
    expect(vars.has("NODE_OPTIONS")).toBe(false);
    expect(vars.has("ANTHROPIC_API_KEY")).toBe(false);
  });

  it("strips blocked variables even when told to inherit everything", async () => {
    const host = new GatewayHost({
      roots: [root.dir],
      inheritEnv: "all",
      baseEnv: { LD_PRELOAD: "/nonexistent/evil.so", PYTHONPATH: "/evil", MY_SETTING: "kept" },
    });
    const out = await stdoutOf(host, "env");
    expect(out).toContain("MY_SETTING=kept");
    expect(out).not.toContain("LD_PRELOAD");
    expect(out).not.toContain("PYTHONPATH");
  });

  it("reports a blocked variable to the model as an error result, and runs nothing", async () => {
    const exec = createExecTool({
      registry,
      hosts: { gateway: new GatewayHost({ roots: [root.dir] }) },
      approve: () => "allow-once",
    });
    const runner = new BasicToolRunner({ tools: [exec] });
    const result = await runner.execute(
      {
        type: "tool-call",
        toolCallId: "c1",
        toolName: "exec",
        input: { command: "touch pwned", env: { LD_PRELOAD: "/tmp/x.so" } },
      },
      toolContext(),
    );
    expect(result.isError).toBe(true);
    expect(String(result.output)).toContain("EXEC_ENV_BLOCKED");
    expect(String(result.output)).toContain("LD_PRELOAD");
    expect(registry.list()).toEqual([]);
  });
});

describe("the working directory restriction", () => {
  const base = path.join(root.dir, "cwd");
  beforeAll(() => {
    mkdirSync(path.join(base, "sub", "deeper"), { recursive: true });
    writeFileSync(path.join(base, "file"), "x");
    symlinkSync("/etc", path.join(base, "out"));
    symlinkSync(path.join(base, "sub"), path.join(base, "in"));
  });
  const host = () => new GatewayHost({ roots: [base] });

  it("starts in the first root by default and accepts directories inside it", () => {
    expect(host().resolveCwd()).toBe(base);
    expect(host().resolveCwd("sub/deeper")).toBe(path.join(base, "sub", "deeper"));
    expect(host().resolveCwd(path.join(base, "sub"))).toBe(path.join(base, "sub"));
    expect(host().resolveCwd("sub/../sub")).toBe(path.join(base, "sub"));
  });

  it("follows a symlink that stays inside to the real directory", () => {
    expect(host().resolveCwd("in")).toBe(path.join(base, "sub"));
  });

  it.each([
    ["a .. escape", ".."],
    ["a deeper .. escape", "sub/../../.."],
    ["an absolute path outside", "/etc"],
    ["the file system root", "/"],
    ["a symlink pointing out", "out"],
    ["a path through a symlink pointing out", "out/ssl"],
    ["a file", "file"],
    ["a missing directory", "missing"],
    ["a NUL byte", "sub\u0000"],
  ])("refuses %s", (_name, cwd) => {
    const error = failure(() => host().resolveCwd(cwd));
    expect(ExecRefusedError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ reason: "cwd" });
  });

  it("starts the command in the resolved directory", async () => {
    const exec = createExecTool({
      registry,
      hosts: { gateway: host() },
      approve: () => "allow-once",
    });
    const result = await exec.execute({ command: "pwd", cwd: "in" }, toolContext());
    expect(result).toMatchObject({ exitCode: 0, stdout: `${path.join(base, "sub")}\n` });
    await expect(exec.execute({ command: "pwd", cwd: "out" }, toolContext())).rejects.toMatchObject(
      {
        code: "EXEC_REFUSED",
        reason: "cwd",
      },
    );
  });
});
