import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BackgroundProcessRegistry,
  BubblewrapSandbox,
  bindCommand,
  createExecTool,
  DockerSandbox,
  type ExecHost,
  GatewayHost,
  NodeHost,
  NotSupportedError,
  SandboxUnavailableError,
} from "./fixtures/exec/api.js";
import {
  descendantsOf,
  eventually,
  FIXTURES,
  isAlive,
  killAll,
  runToEnd,
  tempRoot,
  toolContext,
} from "./fixtures/exec/support.js";

const root = tempRoot();
const work = path.join(root.dir, "work");
const outside = path.join(root.dir, "outside");
mkdirSync(work);
mkdirSync(outside);
// The sandbox hides /tmp, /run and the home directory, where a checkout (and its fixtures)
// may live: the scripts it runs are copied into its working directory.
const BOXED_FIXTURES = path.join(work, ".fixtures");
cpSync(FIXTURES, BOXED_FIXTURES, { recursive: true });
const sandbox = new BubblewrapSandbox({ roots: [work] });
const gateway = new GatewayHost({ roots: [work] });
const registry = new BackgroundProcessRegistry({ killGraceMs: 300, stopGraceMs: 300 });
const seen: number[] = [];

beforeAll(async () => {
  await registry.start();
  await sandbox.probe();
});
afterAll(async () => {
  await registry.stop();
  killAll(seen.filter(isAlive));
  root.cleanup();
});

function run(host: ExecHost, script: string) {
  return runToEnd(registry, host, script);
}

describe("BubblewrapSandbox (real bubblewrap)", () => {
  it("has no network: a server on the host's 127.0.0.1 is unreachable from inside", async () => {
    const server = net.createServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const probe = `${process.execPath} ${path.join(BOXED_FIXTURES, "tcp-probe.mjs")} ${port}`;
      const direct = await run(gateway, probe);
      expect(direct.stdout.trim()).toBe("CONNECTED");
      const boxed = await run(sandbox, probe);
      expect(boxed.stdout.trim()).toMatch(/^(ECONNREFUSED|ENETUNREACH)$/);
      expect(boxed.exitCode).toBe(2);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("lets a command write inside its working directory, and the file lands on the host", async () => {
    const result = await run(sandbox, "echo hello > inside.txt && cat inside.txt");
    expect(result).toMatchObject({ exitCode: 0, stdout: "hello\n" });
    expect(readFileSync(path.join(work, "inside.txt"), "utf8")).toBe("hello\n");
  });

  it("cannot write outside its working directory", async () => {
    const targets = [
      "/etc/beamclaw-probe",
      "/usr/beamclaw-probe",
      path.join(outside, "escaped"),
      path.join(os.homedir(), "beamclaw-probe"),
      "/run/beamclaw-probe",
    ];
    const script = targets
      .map(
        (t) =>
          `if (echo x > '${t}') 2>/dev/null; then echo "WROTE ${t}"; else echo "DENIED ${t}"; fi`,
      )
      .join("\n");
    const { stdout } = await run(sandbox, script);
    expect(stdout.trim().split("\n")).toEqual(targets.map((t) => `DENIED ${t}`));
    for (const target of targets) expect(existsSync(target), target).toBe(false);
  });

  it("gives each command a private /tmp that never reaches the host", async () => {
    const name = `beamclaw-private-${process.pid}-${Date.now()}`;
    const { stdout } = await run(sandbox, `echo x > /tmp/${name} && ls /tmp`);
    expect(stdout.trim().split("\n")).toContain(name);
    expect(existsSync(path.join("/tmp", name))).toBe(false);
  });

  it("hides the home directory and /run, and runs without capabilities", async () => {
    const { stdout } = await run(
      sandbox,
      `ls -A '${os.homedir()}' | wc -l; ls -A /run | wc -l; grep CapEff /proc/self/status`,
    );
    expect(stdout.split("\n").slice(0, 3)).toEqual(["0", "0", "CapEff:\t0000000000000000"]);
  });

  it("reports the exit status and the signal of the command inside", async () => {
    expect(await run(sandbox, "exit 7")).toMatchObject({ exitCode: 7, signal: null });
    expect((await run(sandbox, "kill -9 $$")).exitCode).toBe(137);
  });

  it("kills every process inside the sandbox, grandchildren and escaped sessions included", async () => {
    const script = `exec ${path.join(BOXED_FIXTURES, "fork-tree.sh")}`;
    const { slug, pid } = await registry.spawn(sandbox, {
      command: script,
      script,
      cwd: work,
      env: sandbox.environment(),
    });
    expect(await eventually(() => registry.log(slug).includes("ready"))).toBe(true);
    // bwrap, its init, the script, three sleeps and a subshell: all visible from the host.
    expect(await eventually(() => descendantsOf(pid).length >= 6)).toBe(true);
    const inside = descendantsOf(pid);
    seen.push(pid, ...inside);
    const killed = await registry.killProcess(slug);
    expect(killed.status).toBe("exited");
    expect([pid, ...inside].filter(isAlive)).toEqual([]);
    await registry.remove(slug);
  });

  it("is the exec tool's default host when configured, and the approval names it", async () => {
    const hosts: string[] = [];
    const exec = createExecTool({
      registry,
      hosts: { gateway, sandbox },
      approve: (binding) => {
        hosts.push(binding.host);
        return "allow-once";
      },
    });
    const boxed = await exec.execute({ command: "touch /etc/beamclaw-probe" }, toolContext());
    expect(boxed).toMatchObject({ status: "exited", exitCode: 1 });
    const direct = await exec.execute({ command: "true", host: "gateway" }, toolContext());
    expect(direct).toMatchObject({ exitCode: 0 });
    expect(hosts).toEqual(["sandbox:bubblewrap", "gateway"]);
    expect(existsSync("/etc/beamclaw-probe")).toBe(false);
  });

  it("refuses with SANDBOX_UNAVAILABLE when bubblewrap is missing", async () => {
    const missing = new BubblewrapSandbox({ roots: [work], bwrapPath: "/nonexistent/bwrap" });
    await expect(missing.probe()).rejects.toBeInstanceOf(SandboxUnavailableError);
    await expect(
      registry.spawn(missing, { command: "true", script: "true", cwd: work, env: {} }),
    ).rejects.toMatchObject({ code: "SANDBOX_UNAVAILABLE", driver: "bubblewrap" });
    expect(registry.list()).toEqual([]);
  });

  it("uses the documented bubblewrap isolation", () => {
    const args = sandbox.arguments(work);
    expect(args.slice(0, 14)).toEqual([
      "--unshare-all",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      "--ro-bind",
      "/",
      "/",
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      "--tmpfs",
      "/tmp",
    ]);
    expect(args.slice(14)).toEqual([
      "--tmpfs",
      os.homedir(),
      "--tmpfs",
      "/run",
      "--bind",
      work,
      work,
      "--remount-ro",
      os.homedir(),
      "--remount-ro",
      "/run",
      "--chdir",
      work,
    ]);
  });
});

describe("DockerSandbox", () => {
  const docker = new DockerSandbox({
    image: "debian:bookworm-slim",
    roots: [work],
    user: "1000:1000",
    memory: "256m",
  });

  it("runs docker with no network, a read-only root, only the workdir mounted, env by name", () => {
    const args = docker.arguments(
      { script: "ls -la", cwd: work, env: { CI: "1", PATH: "/usr/bin:/bin" } },
      "beamclaw-exec-test",
    );
    expect(args).toEqual([
      "run",
      "--rm",
      "-i",
      "--name",
      "beamclaw-exec-test",
      "--network",
      "none",
      "--read-only",
      "--tmpfs",
      "/tmp:rw,nosuid,nodev,size=64m",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      "--pids-limit",
      "256",
      "--user",
      "1000:1000",
      "--memory",
      "256m",
      "-v",
      `${work}:${work}:rw`,
      "-w",
      work,
      "-e",
      "CI",
      "-e",
      "PATH=/usr/bin:/bin",
      "debian:bookworm-slim",
      "/bin/sh",
      "-c",
      "ls -la",
    ]);
  });

  it("binds programs as unresolved, under a host id that names the image", () => {
    const binding = bindCommand("ls -la", {
      cwd: work,
      host: docker.id,
      resolveExecutable: docker.resolveExecutable,
    });
    expect(docker.id).toBe("sandbox:docker:debian:bookworm-slim");
    expect(binding.invocations[0]).toMatchObject({ kind: "unresolved", executable: null });
  });

  it("refuses with SANDBOX_UNAVAILABLE when the docker client is missing", async () => {
    const missing = new DockerSandbox({
      image: "alpine",
      roots: [work],
      docker: "/nonexistent/docker",
    });
    await expect(missing.probe()).rejects.toMatchObject({
      code: "SANDBOX_UNAVAILABLE",
      driver: "docker",
    });
    await expect(
      registry.spawn(missing, { command: "true", script: "true", cwd: work, env: {} }),
    ).rejects.toBeInstanceOf(SandboxUnavailableError);
  });

  it("refuses invalid image names", () => {
    expect(() => new DockerSandbox({ image: "--privileged", roots: [work] })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});

describe("NodeHost", () => {
  it("refuses to run anything with NOT_SUPPORTED until the gateway wires it", async () => {
    const node = new NodeHost({ nodeId: "build-box" });
    expect(node.id).toBe("node:build-box");
    expect(() => node.resolveCwd()).toThrow(NotSupportedError);
    await expect(node.spawn({ script: "true", cwd: "/", env: {} })).rejects.toBeInstanceOf(
      NotSupportedError,
    );
    const exec = createExecTool({ registry, hosts: { node }, approve: () => "allow-once" });
    await expect(exec.execute({ command: "true" }, toolContext())).rejects.toMatchObject({
      code: "NOT_SUPPORTED",
    });
  });
});
