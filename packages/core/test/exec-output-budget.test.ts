/**
 * A command with a lot of output: the exec tool keeps the end of stdout and of stderr, and
 * its result must still fit the tool runner's default cap on a result (64 KiB of UTF-8).
 * Otherwise the runner cuts the result's JSON text from its end: stderr (where the error
 * usually is), `timedOut` and the very end of stdout that the exec tool kept are lost, and
 * the model reads a fragment of JSON instead of a result.
 *
 * Polling a chatty background command: `poll` returns the output written since the previous
 * poll, which can be the whole 200 KB ring. The runner would cut it, and since the poll offset
 * had already moved past everything, what was cut could never be polled again. A poll returns
 * at most what fits, says so (`more: true`), and the next poll goes on from there: nothing is
 * lost. `log` returns the end of the output within the same limit.
 */
import { describe, expect, it } from "vitest";
import {
  BasicToolRunner,
  createExecTool,
  createProcessTool,
  type ExecToolOptions,
  InvalidArgumentError,
  OutputRing,
} from "./fixtures/exec/api.js";
import { toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { host, registry } = useGatewayExec();
const context = toolContext();

async function runThroughRunner(command: string, options: Partial<ExecToolOptions> = {}) {
  const exec = createExecTool({
    registry,
    hosts: { gateway: host },
    approve: () => "allow-once",
    ...options,
  });
  const runner = new BasicToolRunner({ tools: [exec] });
  return runner.execute(
    { type: "tool-call", toolCallId: "call-1", toolName: "exec", input: { command } },
    context,
  );
}

/** Bytes of `text` as a JSON string's content. */
const serialized = (text: string) => Buffer.byteLength(JSON.stringify(text)) - 2;

describe("exec output within the runner's result cap", () => {
  it("large stdout and stderr keep both ends, the exit code, and fit the cap", async () => {
    const result = await runThroughRunner("seq 1 40000; seq 1 20000 >&2; exit 3");
    expect(result.isError).toBe(false);
    const output = result.output as Record<string, unknown>;
    expect(typeof output).toBe("object");
    expect(output).toMatchObject({ status: "exited", exitCode: 3, truncated: true });
    expect((output.stdout as string).endsWith("39999\n40000\n")).toBe(true);
    expect((output.stderr as string).endsWith("19999\n20000\n")).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(output))).toBeLessThanOrEqual(64 * 1024);
  });

  it("multi-byte output is measured in bytes, not characters", async () => {
    // 4 characters, 10 bytes a line: 50 000 characters are about 125 KB.
    const result = await runThroughRunner("yes '日本語' | head -n 30000; echo done >&2");
    const output = result.output as Record<string, unknown>;
    expect(typeof output).toBe("object");
    expect((output.stdout as string).endsWith("日本語\n日本語\n")).toBe(true);
    expect(output.stderr).toBe("done\n");
    expect(output.truncated).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(output))).toBeLessThanOrEqual(64 * 1024);
  });

  it("control characters (escaped six bytes each in JSON) are measured as serialized", async () => {
    const result = await runThroughRunner("head -c 60000 /dev/zero | tr '\\0' '\\033'");
    const output = result.output as Record<string, unknown>;
    expect(typeof output).toBe("object");
    expect(output.truncated).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(output))).toBeLessThanOrEqual(64 * 1024);
  });

  it("short stderr is kept whole and stdout takes the rest of maxOutputBytes", async () => {
    const result = await runThroughRunner("seq 1 5000; echo oops >&2", { maxOutputBytes: 2000 });
    const output = result.output as { stdout: string; stderr: string };
    expect(output.stderr).toBe("oops\n");
    // "oops\n" is 6 bytes as JSON; a newline 2, so the longest end that fits may leave one.
    expect(serialized(output.stdout)).toBeGreaterThanOrEqual(2000 - 6 - 1);
    expect(serialized(output.stdout)).toBeLessThanOrEqual(2000 - 6);
    expect(output.stdout.endsWith("4999\n5000\n")).toBe(true);
  });

  it("both long: each gets half of maxOutputBytes", async () => {
    const result = await runThroughRunner("seq 1 5000; seq 1 5000 >&2", { maxOutputBytes: 2000 });
    const output = result.output as { stdout: string; stderr: string };
    expect(serialized(output.stdout)).toBeGreaterThanOrEqual(999);
    expect(serialized(output.stdout)).toBeLessThanOrEqual(1000);
    expect(serialized(output.stderr)).toBeGreaterThanOrEqual(999);
    expect(serialized(output.stderr)).toBeLessThanOrEqual(1000);
    expect(output.stderr.endsWith("5000\n")).toBe(true);
  });

  it("maxOutputBytes is checked", () => {
    expect(() =>
      createExecTool({ registry, hosts: { gateway: host }, maxOutputBytes: -1 }),
    ).toThrow(InvalidArgumentError);
  });
});

async function finished(script: string): Promise<string> {
  const { slug } = await registry.spawn(host, {
    command: script,
    script,
    cwd: host.resolveCwd(),
    env: host.environment(),
    owner: context.sessionKey,
  });
  await registry.wait(slug);
  return slug;
}

const runner = new BasicToolRunner({ tools: [createProcessTool(registry)] });
async function processCall(input: Record<string, unknown>) {
  const result = await runner.execute(
    { type: "tool-call", toolCallId: "call-1", toolName: "process", input: input as never },
    context,
  );
  expect(result.isError).toBe(false);
  expect(typeof result.output).toBe("object");
  expect(Buffer.byteLength(JSON.stringify(result.output))).toBeLessThanOrEqual(64 * 1024);
  return result.output as { output: string; more?: boolean; skippedBytes?: number };
}

describe("process tool output within the runner's result cap", () => {
  it("successive polls return all of a large output, each within the cap", async () => {
    // 1..25000, one a line: 128 894 bytes, within the 200 KB ring.
    const slug = await finished("seq 1 25000");
    let all = "";
    for (let polls = 0; polls < 10; polls++) {
      const polled = await processCall({ action: "poll", slug });
      all += polled.output;
      if (!polled.more) break;
    }
    const expected = Array.from({ length: 25_000 }, (_, i) => `${i + 1}\n`).join("");
    expect(all).toBe(expected);
  });

  it("a poll with multi-byte output never splits a character and loses nothing", async () => {
    const slug = await finished("yes '日本語😀' | head -n 12000");
    let all = "";
    for (let polls = 0; polls < 10; polls++) {
      const polled = await processCall({ action: "poll", slug });
      expect(polled.output.isWellFormed()).toBe(true);
      expect(polled.output).not.toContain("\ufffd");
      all += polled.output;
      if (!polled.more) break;
    }
    expect(all).toBe("日本語😀\n".repeat(12_000));
  });

  it("log of many lines returns their end within the cap", async () => {
    const slug = await finished("seq 1 25000");
    const logged = await processCall({ action: "log", slug, lines: 25_000 });
    expect(logged.output.endsWith("24999\n25000\n")).toBe(true);
  });
});

describe("OutputRing.since with maxJsonBytes", () => {
  const read = (ring: OutputRing, maxJsonBytes: number) => {
    const parts: string[] = [];
    let offset = 0;
    for (let i = 0; i < 1000; i++) {
      const { text, next, more } = ring.since(offset, maxJsonBytes);
      parts.push(text);
      offset = next;
      if (!more) break;
    }
    return parts;
  };

  it("counts control characters as their JSON escapes", () => {
    const ring = new OutputRing(1 << 16);
    ring.append("stdout", Buffer.from("\u0001".repeat(100)));
    const parts = read(ring, 60);
    expect(parts.join("")).toBe("\u0001".repeat(100));
    for (const part of parts) expect(JSON.stringify(part).length - 2).toBeLessThanOrEqual(60);
  });

  it("a limit below one character's size still gets through, a character at a time", () => {
    const ring = new OutputRing(1 << 16);
    ring.append("stdout", Buffer.from("😀😀"));
    expect(read(ring, 1)).toEqual(["😀", "😀"]);
  });

  it("invalid bytes come through once each, as U+FFFD", () => {
    const ring = new OutputRing(1 << 16);
    ring.append("stdout", Buffer.from([0xff, 0xfe, 0x41, 0xff]));
    expect(read(ring, 3).join("")).toBe("\ufffd\ufffdA\ufffd");
  });
});

describe("OutputRing.since across a character split between writes", () => {
  it("holds back the start of a character until the rest of it is written", () => {
    const ring = new OutputRing(1 << 16);
    const bytes = Buffer.from("a日b");
    ring.append("stdout", bytes.subarray(0, 3)); // "a" and two of the three bytes of "日"
    const first = ring.since(0);
    expect(first).toMatchObject({ text: "a", more: false });
    ring.append("stdout", bytes.subarray(3));
    expect(ring.since(first.next)).toMatchObject({ text: "日b", more: false });
  });
});
