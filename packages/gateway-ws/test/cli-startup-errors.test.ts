/**
 * `beamclaw gateway` refusing to start: bad flags are exit code 2 with one line, a start that
 * fails (an address it cannot listen on, a certificate that is not PEM, a YAML alias to
 * nothing) is exit code 1 with one line naming the problem, never a stack trace. The built
 * `dist/cli.js` runs in a child process, as a user runs it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const TOKEN = "cli-startup-errors-token-0123456789";
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(() => {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (pnpm --filter @beamclaw/gateway-ws build)`);
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function configDir(
  gatewayExtra = "",
  rest = "agents: { main: { model: local/llama3 } }",
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "bc-cli-start-"));
  dirs.push(dir);
  await writeFile(
    join(dir, "beamclaw.yaml"),
    [
      `gateway: { host: 127.0.0.1, port: 0, auth: { mode: token, token: \${BEAMCLAW_GATEWAY_TOKEN} }${gatewayExtra} }`,
      "store: { kind: memory }",
      rest,
      "",
    ].join("\n"),
  );
  return dir;
}

async function run(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, BEAMCLAW_CONFIG: undefined, BEAMCLAW_GATEWAY_TOKEN: TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString("utf8");
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString("utf8");
  });
  const code = await new Promise<number | null>((resolve) =>
    child.once("exit", (exitCode) => resolve(exitCode)),
  );
  return { code, stdout, stderr };
}

/** A stack trace's frames: `    at fn (file:line:col)`. */
const STACK_FRAME = /^\s+at\s/m;

describe("beamclaw gateway flags", () => {
  it.each([
    ["an empty --port", ["--port", ""]],
    ["a hexadecimal --port", ["--port", "0x50"]],
    ["an exponent --port", ["--port", "1e3"]],
    ["a --port with spaces", ["--port", " 80"]],
  ])("refuses %s with exit code 2 instead of listening somewhere else", async (_name, flags) => {
    const dir = await configDir();
    const result = await run(["gateway", "--config", join(dir, "beamclaw.yaml"), ...flags]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--port must be a port number");
    expect(result.stdout).not.toContain("listening");
  });

  it("refuses an empty --drain-timeout-ms with exit code 2", async () => {
    const dir = await configDir();
    const result = await run([
      "gateway",
      "--config",
      join(dir, "beamclaw.yaml"),
      "--drain-timeout-ms",
      "",
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--drain-timeout-ms must be a whole number");
  });
});

describe("beamclaw usage errors and help", () => {
  it.each([
    ["an unknown flag", ["gateway", "--bogus"], "--bogus"],
    ["a flag without its value", ["gateway", "--port"], "--port"],
    ["a value given to a switch", ["gateway", "--generate-token=yes"], "--generate-token"],
    ["a stray argument", ["gateway", "extra"], "extra"],
    ["a negative number", ["gateway", "--port", "-1"], "--port"],
    ["doctor's unknown flag", ["doctor", "--bogus"], "--bogus"],
  ])(
    "%s is one line naming it and exit code 2, never a stack trace",
    async (_name, args, named) => {
      const result = await run(args);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(named);
      expect(result.stderr).toContain("beamclaw --help");
      expect(result.stderr).not.toMatch(STACK_FRAME);
      expect(result.stderr).not.toContain("TypeError");
      expect(result.stdout).not.toContain("listening");
    },
  );

  it.each([
    ["gateway", "--help"],
    ["gateway", "-h"],
    ["doctor", "--help"],
  ])("beamclaw %s %s prints the usage and exits 0 without starting", async (command, flag) => {
    const result = await run([command, flag]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`beamclaw ${command} +\\[--config <file>\\]`));
    expect(result.stderr).toBe("");
    expect(result.stdout).not.toContain("listening");
  });

  it("no command is a usage error: the usage on stderr, nothing on stdout, exit code 2", async () => {
    const result = await run([]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/beamclaw gateway +\[--config <file>\]/);
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });

  it.each([["--help"], ["-h"], ["help"]])(
    "beamclaw %s prints the usage on stdout and exits 0",
    async (flag) => {
      const result = await run([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/beamclaw gateway +\[--config <file>\]/);
      expect(result.stderr).toBe("");
    },
  );

  it("an unknown command is a usage error: named on stderr with the usage, exit code 2", async () => {
    const result = await run(["gatway"]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain('unknown command "gatway"');
    expect(result.stderr).toMatch(/beamclaw gateway +\[--config <file>\]/);
  });

  it("a configuration file that does not exist names it and says how to give one, exit code 1", async () => {
    const dir = await configDir();
    const missingFile = join(dir, "nope.yaml");
    const result = await run(["gateway", "--config", missingFile]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no configuration file at ${missingFile}`);
    expect(result.stderr).toContain("--config <file>");
    expect(result.stderr).toContain("BEAMCLAW_CONFIG");
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });
});

/** A configuration whose fs store lives in `storeDir`. */
async function fsStoreConfig(storeDir: string): Promise<string> {
  const dir = await configDir();
  const file = join(dir, "beamclaw.yaml");
  const yaml = await readFile(file, "utf8");
  await writeFile(
    file,
    yaml.replace(
      "store: { kind: memory }",
      `store: { kind: fs, dir: ${JSON.stringify(storeDir)} }`,
    ),
  );
  return dir;
}

describe("a store.dir on a kernel filesystem (/proc, /sys)", () => {
  // Node 20's recursive mkdir never returns for a path under /proc (procfs answers ENOENT,
  // which it takes for a missing parent): the start would hang there for ever.
  it.each([
    ["under /proc", () => "/proc/beamclaw-store", "/proc/beamclaw-store"],
    ["under /sys", () => "/sys/beamclaw-store/data", "/sys/beamclaw-store/data"],
  ])(
    "%s: beamclaw gateway refuses it in one line naming it, exit code 1",
    async (_name, storeDir, named) => {
      const dir = await fsStoreConfig(storeDir());
      const result = await run(["gateway", "--config", join(dir, "beamclaw.yaml")]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`store.dir ${named}`);
      expect(result.stderr).toMatch(/kernel's (proc|sysfs) filesystem/);
      expect(result.stderr).not.toMatch(STACK_FRAME);
      expect(result.stdout).not.toContain("listening");
    },
  );

  it("a relative store.dir through a symbolic link to /proc is refused too", async () => {
    const dir = await fsStoreConfig("./link/store");
    await symlink("/proc", join(dir, "link"));
    const result = await run(["gateway", "--config", join(dir, "beamclaw.yaml")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`store.dir ${join(dir, "link", "store")}`);
    expect(result.stderr).toContain("proc filesystem");
    expect(result.stdout).not.toContain("listening");
  });

  it("beamclaw doctor reports it as an error, exit code 1", async () => {
    const dir = await fsStoreConfig("/proc/beamclaw-store");
    const result = await run(["doctor", "--config", join(dir, "beamclaw.yaml")]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^ERROR store\.dir \/proc\/beamclaw-store .*proc filesystem/m);
  });
});

describe("beamclaw gateway start failures", () => {
  it("an address this machine does not have is one line naming it, exit code 1", async () => {
    const dir = await configDir();
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface.
    const result = await run([
      "gateway",
      "--config",
      join(dir, "beamclaw.yaml"),
      "--host",
      "192.0.2.1",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("192.0.2.1");
    expect(result.stderr).toContain("EADDRNOTAVAIL");
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });

  it("a gateway.tls certificate that is not PEM is one line naming gateway.tls, exit code 1", async () => {
    const dir = await configDir(", tls: { cert: ./cert.pem, key: ./key.pem }");
    await writeFile(join(dir, "cert.pem"), "not a certificate\n");
    await writeFile(join(dir, "key.pem"), "not a key\n");
    const result = await run(["gateway", "--config", join(dir, "beamclaw.yaml")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("gateway.tls");
    expect(result.stderr).not.toMatch(STACK_FRAME);
    expect(result.stdout).not.toContain("listening");
  });

  it("a YAML alias to an anchor that does not exist is a configuration error, exit code 1", async () => {
    const dir = await configDir("", "agents: { main: *missing }");
    const result = await run(["gateway", "--config", join(dir, "beamclaw.yaml")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("invalid configuration");
    expect(result.stderr).toMatch(/alias/i);
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });
});
