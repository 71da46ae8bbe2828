/**
 * `BubblewrapSandbox` refuses Unix-domain sockets with a seccomp filter: a read-only bind does
 * not stop `connect()`, so without it a command could reach any daemon whose socket it can
 * see (a Docker socket). Run for real in bwrap: a server listens on a socket inside the
 * sandbox's view; a command inside cannot connect to it (and the same command can, with
 * `allowUnixSockets: true`). The filter itself is checked instruction by instruction with a
 * small classic-BPF interpreter, for each architecture and the ABIs a process may switch to.
 */
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECCOMP_ARCHES, unixSocketFilter } from "../src/tools/exec/seccomp.js";
import {
  BackgroundProcessRegistry,
  BubblewrapSandbox,
  SandboxUnavailableError,
} from "./fixtures/exec/api.js";
import { runToEnd, tempRoot } from "./fixtures/exec/support.js";

const root = tempRoot();
const work = root.dir;
const socketPath = path.join(work, "daemon.sock");
const sandbox = new BubblewrapSandbox({ roots: [work] });
const open = new BubblewrapSandbox({ roots: [work], allowUnixSockets: true });
const registry = new BackgroundProcessRegistry({ killGraceMs: 300, stopGraceMs: 300 });
const accepted: Socket[] = [];
const server = createServer((socket) => {
  accepted.push(socket);
  socket.end("hello from the daemon\n");
});

beforeAll(async () => {
  server.listen(socketPath);
  await once(server, "listening");
  await registry.start();
  await sandbox.probe();
  await open.probe();
});
afterAll(async () => {
  await registry.stop();
  for (const socket of accepted) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  root.cleanup();
});

function run(script: string, inside: BubblewrapSandbox) {
  return runToEnd(registry, inside, script);
}

/** A command that connects to the daemon's socket and prints what happened. */
const connect = `${JSON.stringify(process.execPath)} -e 'require("node:net").connect(${JSON.stringify(socketPath)}).on("data", (d) => process.stdout.write("READ " + d)).on("error", (e) => console.log("ERROR " + e.code))'`;

describe("BubblewrapSandbox and Unix sockets", () => {
  it("a command inside cannot connect to a Unix socket it can see: socket(AF_UNIX) is refused", async () => {
    const before = accepted.length;
    const result = await run(connect, sandbox);
    expect(result.stdout).toBe("ERROR EACCES\n");
    expect(accepted).toHaveLength(before);
  });

  it("the same command connects with allowUnixSockets: true (what the filter stops)", async () => {
    const before = accepted.length;
    const result = await run(connect, open);
    expect(result.stdout).toBe("READ hello from the daemon\n");
    expect(accepted).toHaveLength(before + 1);
  });

  it("the filter is loaded in the command's process, and pipes and socketpairs still work", async () => {
    const result = await run(
      `grep '^Seccomp:' /proc/self/status; ${JSON.stringify(process.execPath)} -e 'console.log(require("node:child_process").execFileSync("echo", ["child ok"]).toString().trim())'`,
      sandbox,
    );
    expect(result.exitCode).toBe(0);
    // 2: a filter is in force. The child's stdio are socketpairs (libuv), which stay allowed.
    expect(result.stdout.split("\n")).toEqual(["Seccomp:\t2", "child ok", ""]);
  });

  it("passes the filter to bwrap by descriptor (--seccomp), after the cwd descriptor", () => {
    const args = sandbox.arguments(work, { cwdFd: 3, seccompFd: 4 });
    expect(args.slice(args.indexOf("--seccomp"), args.indexOf("--seccomp") + 2)).toEqual([
      "--seccomp",
      "4",
    ]);
    expect(sandbox.arguments(work)).not.toContain("--seccomp");
  });

  it("an architecture without a filter makes the sandbox unavailable, naming the way out", () => {
    let error: unknown;
    try {
      unixSocketFilter("s390x");
    } catch (caught) {
      error = caught;
    }
    expect(SandboxUnavailableError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("allowUnixSockets: true");
  });
});

// ------------------------------------------------------------------ the filter, interpreted

const RET_ALLOW = 0x7fff0000;
const errno = (code: number) => 0x00050000 | code;
const EACCES = 13;
const ENOSYS = 38;

/** Runs a classic BPF seccomp program over one `seccomp_data` (the subset of opcodes it uses). */
function decide(program: Uint8Array, data: { nr: number; arch: number; arg0?: number }): number {
  const view = new DataView(program.buffer, program.byteOffset, program.byteLength);
  const input = new DataView(new ArrayBuffer(64));
  input.setInt32(0, data.nr, true);
  input.setUint32(4, data.arch, true);
  input.setBigUint64(16, BigInt(data.arg0 ?? 0), true);
  let acc = 0;
  for (let pc = 0; pc * 8 < program.byteLength; ) {
    const code = view.getUint16(pc * 8, true);
    const jt = view.getUint8(pc * 8 + 2);
    const jf = view.getUint8(pc * 8 + 3);
    const k = view.getUint32(pc * 8 + 4, true);
    pc++;
    if (code === 0x20) acc = input.getUint32(k, true);
    else if (code === 0x15) pc += acc === k ? jt : jf;
    else if (code === 0x35) pc += acc >= k ? jt : jf;
    else if (code === 0x06) return k;
    else throw new Error(`unexpected opcode ${code.toString(16)}`);
  }
  throw new Error("the program ran off its end");
}

describe("the seccomp filter against Unix sockets", () => {
  const X86_64 = 0xc000003e;
  const I386 = 0x40000003;
  const AARCH64 = 0xc00000b7;
  const ARM = 0x40000028;

  it("x64: refuses socket(AF_UNIX), allows other families and other calls", () => {
    const program = unixSocketFilter("x64");
    expect(decide(program, { arch: X86_64, nr: 41, arg0: 1 })).toBe(errno(EACCES));
    expect(decide(program, { arch: X86_64, nr: 41, arg0: 2 })).toBe(RET_ALLOW); // AF_INET
    expect(decide(program, { arch: X86_64, nr: 53, arg0: 1 })).toBe(RET_ALLOW); // socketpair
    expect(decide(program, { arch: X86_64, nr: 42, arg0: 3 })).toBe(RET_ALLOW); // connect
    expect(decide(program, { arch: X86_64, nr: 0 })).toBe(RET_ALLOW); // read
    for (const nr of [425, 426, 427]) {
      expect(decide(program, { arch: X86_64, nr })).toBe(errno(ENOSYS)); // io_uring
    }
    // The x32 ABI's numbers carry bit 30: all refused.
    expect(decide(program, { arch: X86_64, nr: 0x40000000 + 41, arg0: 1 })).toBe(errno(ENOSYS));
  });

  it("x64 running 32-bit code: socket(AF_UNIX) and socketcall refused", () => {
    const program = unixSocketFilter("x64");
    expect(decide(program, { arch: I386, nr: 359, arg0: 1 })).toBe(errno(EACCES));
    expect(decide(program, { arch: I386, nr: 359, arg0: 2 })).toBe(RET_ALLOW);
    expect(decide(program, { arch: I386, nr: 102, arg0: 1 })).toBe(errno(EACCES));
    expect(decide(program, { arch: I386, nr: 3 })).toBe(RET_ALLOW);
  });

  it("arm64 and its 32-bit ABI; an ABI the filter does not know runs nothing", () => {
    const program = unixSocketFilter("arm64");
    expect(decide(program, { arch: AARCH64, nr: 198, arg0: 1 })).toBe(errno(EACCES));
    expect(decide(program, { arch: AARCH64, nr: 198, arg0: 10 })).toBe(RET_ALLOW);
    expect(decide(program, { arch: AARCH64, nr: 426 })).toBe(errno(ENOSYS));
    expect(decide(program, { arch: ARM, nr: 281, arg0: 1 })).toBe(errno(EACCES));
    expect(decide(program, { arch: ARM, nr: 281, arg0: 2 })).toBe(RET_ALLOW);
    // An x86_64 call under the arm64 filter: not an ABI of this machine.
    expect(decide(program, { arch: X86_64, nr: 41, arg0: 1 })).toBe(errno(ENOSYS));
  });

  it("has a filter for every architecture it names", () => {
    for (const arch of SECCOMP_ARCHES) {
      const program = unixSocketFilter(arch);
      expect(program.byteLength % 8).toBe(0);
      expect(program.byteLength).toBeGreaterThan(8);
    }
  });
});
