/**
 * The seccomp filter the bubblewrap sandbox loads (`bwrap --seccomp`): a classic BPF program
 * over `struct seccomp_data` that refuses to create Unix-domain sockets, so that a command
 * cannot `connect()` to a daemon's socket it can see in the read-only file system (a Docker
 * socket, a database's), and refuses io_uring, whose socket and connect operations would
 * bypass the filter. Everything else is allowed; `socketpair` too (a connected pair reaches
 * nothing outside), and sockets of other families (the sandbox has no network anyway).
 */
import os from "node:os";
import { SandboxUnavailableError } from "../../errors.js";

// Classic BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EACCES = 13;
const ENOSYS = 38;
const AF_UNIX = 1;
/** x32 system calls on x86_64 carry this bit in their number. */
const X32_SYSCALL_BIT = 0x40000000;
/** io_uring_setup, io_uring_enter, io_uring_register: the same numbers on every arch below. */
const IO_URING = [425, 426, 427] as const;

/** `struct seccomp_data` offsets. */
const NR = 0;
const ARCH = 4;
const ARG0 = 16;

/** The system calls that matter, per audit arch (linux/audit.h). */
interface ArchRules {
  readonly arch: number;
  readonly socket: number;
  /** i386 multiplexes sockets through `socketcall`, whose arguments a filter cannot read. */
  readonly socketcall?: number;
  /** x86_64: refuse the x32 ABI (nobody uses it; its numbers would need a table of their own). */
  readonly noX32?: boolean;
}

const X86_64: ArchRules = { arch: 0xc000003e, socket: 41, noX32: true };
const I386: ArchRules = { arch: 0x40000003, socket: 359, socketcall: 102 };
const AARCH64: ArchRules = { arch: 0xc00000b7, socket: 198 };
const ARM: ArchRules = { arch: 0x40000028, socket: 281 };
const RISCV64: ArchRules = { arch: 0xc00000f3, socket: 198 };

/** Per Node.js `process.arch`: the native ABI and the compat ones a process may switch to. */
const ARCHES: Readonly<Record<string, readonly ArchRules[]>> = {
  x64: [X86_64, I386],
  ia32: [I386],
  arm64: [AARCH64, ARM],
  arm: [ARM],
  riscv64: [RISCV64],
};

/** The architectures {@link unixSocketFilter} has a filter for (`process.arch` values). */
export const SECCOMP_ARCHES: readonly string[] = Object.keys(ARCHES);

type Instruction = { code: number; k: number; jt?: string; jf?: string } | { label: string };

/**
 * The compiled filter (an array of `struct sock_filter`, 8 bytes each, in this machine's byte
 * order) that `bwrap --seccomp FD` reads. Refused: `socket(AF_UNIX, ...)` (`EACCES`), io_uring
 * (`ENOSYS`, so that programs fall back to plain system calls), i386's `socketcall` and the x32
 * ABI, and every call of an ABI not listed (`ENOSYS`).
 *
 * @throws SandboxUnavailableError for an architecture without a filter (see {@link SECCOMP_ARCHES}).
 */
export function unixSocketFilter(arch: string = process.arch): Uint8Array {
  const rules = ARCHES[arch];
  if (rules === undefined) {
    throw new SandboxUnavailableError(
      "bubblewrap",
      `no seccomp filter against Unix sockets for ${arch} (have: ${SECCOMP_ARCHES.join(", ")}); pass allowUnixSockets: true to run without it`,
    );
  }
  const littleEndian = os.endianness() === "LE";
  // The low 32 bits of the first argument (the socket's family).
  const arg0 = littleEndian ? ARG0 : ARG0 + 4;
  const program: Instruction[] = [{ code: LD_W_ABS, k: ARCH }];
  rules.forEach((rule, i) => {
    program.push({ code: JEQ_K, k: rule.arch, jt: `abi${i}` });
  });
  program.push({ code: RET_K, k: RET_ERRNO | ENOSYS });
  rules.forEach((rule, i) => {
    program.push({ label: `abi${i}` }, { code: LD_W_ABS, k: NR });
    if (rule.noX32) program.push({ code: JGE_K, k: X32_SYSCALL_BIT, jt: "nosys" });
    for (const nr of IO_URING) program.push({ code: JEQ_K, k: nr, jt: "nosys" });
    if (rule.socketcall !== undefined) {
      program.push({ code: JEQ_K, k: rule.socketcall, jt: "refuse" });
    }
    program.push(
      { code: JEQ_K, k: rule.socket, jf: "allow" },
      { code: LD_W_ABS, k: arg0 },
      { code: JEQ_K, k: AF_UNIX, jt: "refuse", jf: "allow" },
    );
  });
  program.push(
    { label: "allow" },
    { code: RET_K, k: RET_ALLOW },
    { label: "refuse" },
    { code: RET_K, k: RET_ERRNO | EACCES },
    { label: "nosys" },
    { code: RET_K, k: RET_ERRNO | ENOSYS },
  );
  return assemble(program, littleEndian);
}

/** Resolves the labels into forward jump offsets and encodes the instructions. */
function assemble(program: readonly Instruction[], littleEndian: boolean): Uint8Array {
  const at = new Map<string, number>();
  const code: Array<{ code: number; k: number; jt?: string; jf?: string }> = [];
  for (const instruction of program) {
    if ("label" in instruction) at.set(instruction.label, code.length);
    else code.push(instruction);
  }
  const bytes = new Uint8Array(code.length * 8);
  const view = new DataView(bytes.buffer);
  code.forEach((instruction, index) => {
    const jump = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const offset = at.get(label)! - index - 1;
      if (!(offset >= 0 && offset <= 255)) throw new RangeError(`jump to ${label} out of range`);
      return offset;
    };
    view.setUint16(index * 8, instruction.code, littleEndian);
    view.setUint8(index * 8 + 2, jump(instruction.jt));
    view.setUint8(index * 8 + 3, jump(instruction.jf));
    view.setUint32(index * 8 + 4, instruction.k >>> 0, littleEndian);
  });
  return bytes;
}
