import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  BackgroundProcessRegistry,
  type BackgroundProcessRegistryOptions,
  GatewayHost,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  ProcessNotFoundError,
} from "./fixtures/exec/api.js";
import {
  descendantsOf,
  eventually,
  FIXTURES,
  groupMembers,
  isAlive,
  killAll,
  printedPid,
  printedPids,
  tempRoot,
} from "./fixtures/exec/support.js";

const root = tempRoot();
const host = new GatewayHost({ roots: [root.dir] });
const live = new Set<BackgroundProcessRegistry>();
const seen = new Set<number>();

afterEach(async () => {
  for (const registry of live) await registry.stop();
  live.clear();
  // Safety net only: every test checks that its processes are gone.
  killAll([...seen].filter(isAlive));
  seen.clear();
});
afterAll(() => root.cleanup());

async function registryWith(options: BackgroundProcessRegistryOptions = {}) {
  const registry = new BackgroundProcessRegistry({ trackIntervalMs: 50, ...options });
  live.add(registry);
  return registry.start();
}

async function run(registry: BackgroundProcessRegistry, script: string, timeoutMs?: number) {
  const started = await registry.spawn(host, {
    command: script,
    script,
    cwd: root.dir,
    env: host.environment(),
    timeoutMs,
  });
  seen.add(started.pid);
  return started;
}

/** Waits until the process printed `ready` and `count` pids; returns the pids. */
async function ready(
  registry: BackgroundProcessRegistry,
  slug: string,
  count = 0,
): Promise<number[]> {
  const done = () => {
    const log = registry.log(slug);
    return log.includes("ready") && printedPids(log).length >= count;
  };
  expect(await eventually(done)).toBe(true);
  const pids = printedPids(registry.log(slug));
  for (const pid of pids) seen.add(pid);
  return pids;
}

const fixture = (name: string) => `exec ${path.join(FIXTURES, name)}`;

describe("BackgroundProcessRegistry", () => {
  it("reports the exit code, stdout and stderr of a finished command", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "echo out; echo err >&2; exit 3");
    const done = await registry.wait(slug);
    expect(done).toMatchObject({ status: "exited", exitCode: 3, signal: null, timedOut: false });
    expect(registry.output(slug)).toEqual({ stdout: "out\n", stderr: "err\n", truncated: false });
  });

  it("reports the signal that ended a command", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "kill -9 $$");
    expect(await registry.wait(slug)).toMatchObject({ exitCode: null, signal: "SIGKILL" });
  });

  it("wait gives up after its timeout with the command still running, and resolves once it exits", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "sleep 0.3; echo done");
    expect((await registry.wait(slug, { timeoutMs: 10 })).status).toBe("running");
    expect(await registry.wait(slug)).toMatchObject({ status: "exited", exitCode: 0 });
  });

  it("wait honours a timeout longer than a timer holds instead of giving up at once", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "sleep 0.3; echo done");
    // 3e9 ms overflows setTimeout, which Node then fires after 1 ms.
    expect(await registry.wait(slug, { timeoutMs: 3_000_000_000 })).toMatchObject({
      status: "exited",
      exitCode: 0,
    });
  });

  it("poll returns only the output written since the previous poll", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, 'echo one; read line; echo "got $line"');
    expect(await eventually(() => registry.log(slug) === "one\n")).toBe(true);
    expect(registry.poll(slug)).toMatchObject({ output: "one\n", process: { status: "running" } });
    await registry.write(slug, "hi\n");
    await registry.wait(slug);
    expect(registry.poll(slug)).toMatchObject({
      output: "got hi\n",
      process: { status: "exited" },
    });
    expect(registry.poll(slug).output).toBe("");
  });

  it("log tails the last lines or bytes, of both streams or one", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "seq 1 1000; echo oops >&2");
    await registry.wait(slug);
    expect(registry.log(slug, { lines: 3 })).toBe("999\n1000\noops\n");
    expect(registry.log(slug, { bytes: 7 })).toBe("0\noops\n");
    expect(registry.log(slug, { lines: 2, stream: "stdout" })).toBe("999\n1000\n");
    expect(registry.log(slug, { stream: "stderr" })).toBe("oops\n");
  });

  it("write feeds stdin, eof closes it, and a closed stdin refuses more", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "cat");
    await registry.write(slug, "abc");
    await registry.write(slug, "def\n", { eof: true });
    expect(await registry.wait(slug)).toMatchObject({ exitCode: 0, stdinOpen: false });
    expect(registry.output(slug).stdout).toBe("abcdef\n");
    await expect(registry.write(slug, "more")).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("keeps at most outputLimitBytes of output, dropping the oldest bytes", async () => {
    const registry = await registryWith({ outputLimitBytes: 1000 });
    const { slug } = await run(registry, "seq 1 2000");
    const done = await registry.wait(slug);
    const { stdout, truncated } = registry.output(slug);
    expect(truncated).toBe(true);
    expect(Buffer.byteLength(stdout)).toBe(1000);
    expect(stdout.endsWith("1999\n2000\n")).toBe(true);
    expect(done.outputBytes).toBe(8893);
    expect(done.droppedBytes).toBe(8893 - 1000);
  });

  it("kill sends SIGTERM to the whole process group", async () => {
    const registry = await registryWith();
    const { slug, pid } = await run(
      registry,
      'sleep 300 & echo "pid $!"; sleep 300 & echo "pid $!"; echo ready; wait',
    );
    const pids = await ready(registry, slug);
    expect(pids.every(isAlive)).toBe(true);
    const killed = await registry.killProcess(slug);
    expect(killed).toMatchObject({ status: "exited", signal: "SIGTERM", killed: true });
    expect(pids.filter(isAlive)).toEqual([]);
    expect(groupMembers(pid)).toEqual([]);
  });

  it("escalates to SIGKILL after the grace period when the command ignores SIGTERM", async () => {
    const registry = await registryWith({ killGraceMs: 300 });
    const { slug, pid } = await run(registry, fixture("ignore-term.sh"));
    await ready(registry, slug);
    const members = groupMembers(pid);
    expect(members.length).toBeGreaterThan(0);
    const before = Date.now();
    const killed = await registry.killProcess(slug);
    expect(Date.now() - before).toBeGreaterThanOrEqual(280);
    expect(killed).toMatchObject({ status: "exited", signal: "SIGKILL", killed: true });
    expect(groupMembers(pid)).toEqual([]);
    expect(members.filter(isAlive)).toEqual([]);
  });

  it("kills grandchildren and children that moved to a session of their own", async () => {
    const registry = await registryWith();
    const { slug, pid } = await run(registry, fixture("fork-tree.sh"));
    const pids = await ready(registry, slug, 4);
    expect(pids).toHaveLength(4);
    expect(pids.every(isAlive)).toBe(true);
    // The setsid child really leaves the command's process group.
    const session = printedPid(registry.log(slug), "session")!;
    expect(await eventually(() => !groupMembers(pid).includes(session))).toBe(true);
    await registry.killProcess(slug);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(groupMembers(pid)).toEqual([]);
  });

  it("kills a descendant that escaped into its own session after its parent exited", async () => {
    const registry = await registryWith();
    const { slug, pid } = await run(registry, fixture("escape-late.sh"));
    const [escaped] = await ready(registry, slug);
    expect(isAlive(escaped!)).toBe(true);
    // setsid runs in the child a moment after the shell printed its pid: wait until it has left.
    expect(
      await eventually(
        () => !descendantsOf(pid).includes(escaped!) && !groupMembers(pid).includes(escaped!),
      ),
    ).toBe(true);
    await registry.killProcess(slug);
    expect(isAlive(escaped!)).toBe(false);
  });

  it("kills what a command left running when its main process ended", async () => {
    const registry = await registryWith({ killGraceMs: 200 });
    const { slug } = await run(registry, 'sleep 300 >/dev/null 2>&1 & echo "pid $!"');
    await registry.wait(slug);
    const [leftover] = printedPids(registry.log(slug));
    seen.add(leftover!);
    expect(await eventually(() => !isAlive(leftover!))).toBe(true);
  });

  it("kills a daemon that left its session while its parent exited at once (ssh-agent style)", async () => {
    const registry = await registryWith();
    // The subshell exits right after the fork: no scan of the tree can see the daemon's parent.
    const { slug, pid } = await run(
      registry,
      '( setsid sleep 300 >/dev/null 2>&1 </dev/null & echo "pid daemon $!" ); echo ready; sleep 300',
    );
    const [daemon] = await ready(registry, slug, 1);
    expect(isAlive(daemon!)).toBe(true);
    // setsid runs in the child a moment after the shell printed its pid: wait until it has left.
    expect(
      await eventually(
        () => !descendantsOf(pid).includes(daemon!) && !groupMembers(pid).includes(daemon!),
      ),
    ).toBe(true);
    await registry.killProcess(slug);
    expect(await eventually(() => !isAlive(daemon!))).toBe(true);
  });

  it("kills such a daemon when the command that started it ends", async () => {
    const registry = await registryWith({ killGraceMs: 200 });
    const { slug } = await run(
      registry,
      '( setsid sleep 300 >/dev/null 2>&1 </dev/null & echo "pid daemon $!" )',
    );
    await registry.wait(slug);
    const [daemon] = printedPids(registry.log(slug));
    seen.add(daemon!);
    expect(await eventually(() => !isAlive(daemon!))).toBe(true);
  });

  it("kills a command that runs past its time limit and reports it", async () => {
    const registry = await registryWith();
    const { slug } = await run(registry, "sleep 30", 150);
    expect(await registry.wait(slug)).toMatchObject({
      status: "exited",
      timedOut: true,
      killed: false,
      signal: "SIGTERM",
    });
  });

  it("forgets finished processes after finishedTtlMs", async () => {
    const registry = await registryWith({ finishedTtlMs: 100 });
    const { slug } = await run(registry, "true");
    await registry.wait(slug);
    expect(registry.list().map((p) => p.slug)).toEqual([slug]);
    expect(await eventually(() => registry.list().length === 0)).toBe(true);
    expect(() => registry.get(slug)).toThrow(ProcessNotFoundError);
  });

  it("keeps at most maxFinished finished background processes, forgetting those that ended first", async () => {
    const registry = await registryWith({ maxFinished: 2 });
    const slugs: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { slug } = await run(registry, "true");
      registry.background(slug);
      await registry.wait(slug);
      slugs.push(slug);
    }
    expect(registry.list().map((p) => p.slug)).toEqual(slugs.slice(2));
    for (const slug of slugs.slice(0, 2)) {
      expect(() => registry.get(slug)).toThrow(ProcessNotFoundError);
    }
    // One that finishes in the foreground is its caller's to read: it does not count.
    const { slug: foreground } = await run(registry, "true");
    await registry.wait(foreground);
    expect(registry.list().map((p) => p.slug)).toEqual([...slugs.slice(2), foreground]);
    expect(() => new BackgroundProcessRegistry({ maxFinished: 0 })).toThrow(InvalidArgumentError);
  });

  it("remove kills a running process and forgets it", async () => {
    const registry = await registryWith();
    const { slug, pid } = await run(registry, "sleep 300");
    expect(await registry.remove(slug)).toBe(true);
    expect(isAlive(pid)).toBe(false);
    expect(registry.list()).toEqual([]);
    expect(await registry.remove(slug)).toBe(false);
  });

  it("lists processes by owner", async () => {
    const registry = await registryWith();
    const a = await registry.spawn(host, {
      command: "true",
      script: "true",
      cwd: root.dir,
      env: host.environment(),
      owner: "agent:a:main",
    });
    await run(registry, "true");
    expect(registry.list({ owner: "agent:a:main" }).map((p) => p.slug)).toEqual([a.slug]);
    expect(registry.list()).toHaveLength(2);
  });

  it("refuses more than maxProcesses running commands", async () => {
    const registry = await registryWith({ maxProcesses: 1 });
    await run(registry, "sleep 300");
    await expect(run(registry, "sleep 300")).rejects.toBeInstanceOf(OverloadedError);
  });

  it("refuses unknown slugs and spawning on a stopped registry with typed errors", async () => {
    const registry = await registryWith();
    expect(() => registry.poll("nope-1")).toThrow(ProcessNotFoundError);
    await expect(registry.killProcess("nope-1")).rejects.toBeInstanceOf(ProcessNotFoundError);
    await registry.stop();
    await expect(run(registry, "true")).rejects.toBeInstanceOf(NoProcessError);
  });

  it("stop() leaves no process behind: trees, grandchildren and SIGTERM-ignoring commands", async () => {
    const registry = await registryWith({ stopGraceMs: 200 });
    const tree = await run(registry, fixture("fork-tree.sh"));
    const stubborn = await run(registry, fixture("ignore-term.sh"));
    const pids = [
      ...(await ready(registry, tree.slug, 4)),
      ...(await ready(registry, stubborn.slug)),
    ];
    pids.push(...descendantsOf(stubborn.pid), tree.pid, stubborn.pid);
    for (const p of pids) seen.add(p);
    expect(pids.length).toBeGreaterThanOrEqual(6);
    await registry.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(groupMembers(tree.pid)).toEqual([]);
    expect(groupMembers(stubborn.pid)).toEqual([]);
    expect(registry.list()).toEqual([]);
  });

  it("a registry killed outright SIGKILLs every tree at once", async () => {
    const registry = await registryWith();
    const { slug, pid } = await run(registry, fixture("fork-tree.sh"));
    const pids = [...(await ready(registry, slug, 4)), pid];
    registry.kill();
    expect(await eventually(() => pids.every((p) => !isAlive(p)))).toBe(true);
  });
});
