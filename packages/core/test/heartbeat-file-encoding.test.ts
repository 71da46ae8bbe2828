/**
 * `HeartbeatRunner` reading a `HEARTBEAT.md` saved as UTF-16 (with its byte order mark, as
 * Windows editors save "Unicode" text): it is read as text, so a checklist of only headings
 * still skips the beat and a real one reaches the prompt legibly, not as bytes with NULs.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_HEARTBEAT_PROMPT, HEARTBEAT_OK, HeartbeatRunner } from "../src/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function utf16(text: string, order: "le" | "be"): Buffer {
  const le = Buffer.from(text, "utf16le");
  if (order === "le") return Buffer.concat([Buffer.from([0xff, 0xfe]), le]);
  return Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(le).swap16()]);
}

async function runWithFile(content: Buffer) {
  const dir = await mkdtemp(path.join(tmpdir(), "heartbeat-encoding-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "HEARTBEAT.md");
  await writeFile(file, content);
  const prompts: string[] = [];
  const runner = new HeartbeatRunner({
    agentId: "main",
    heartbeatFile: file,
    runTurn: async ({ prompt }) => {
      prompts.push(prompt);
      return { status: "ok", text: HEARTBEAT_OK };
    },
  });
  await runner.start();
  cleanups.push(() => runner.stop());
  return { outcome: await runner.runNow(), prompts };
}

describe("HEARTBEAT.md saved as UTF-16", () => {
  it.each(["le", "be"] as const)("UTF-16%s with only headings skips the beat", async (order) => {
    const { outcome, prompts } = await runWithFile(utf16("# Checklist\r\n\r\n## Later\r\n", order));
    expect(outcome).toMatchObject({ type: "skipped", reason: "empty-heartbeat-file" });
    expect(prompts).toEqual([]);
  });

  it.each(["le", "be"] as const)("UTF-16%s checklist reaches the prompt as text", async (order) => {
    const { outcome, prompts } = await runWithFile(
      utf16("# Checklist\r\n- Check the disk (Größe ≥ 90 %)\r\n", order),
    );
    expect(outcome.type).toBe("suppressed");
    expect(prompts).toEqual([
      `${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n# Checklist\r\n- Check the disk (Größe ≥ 90 %)`,
    ]);
  });

  it("a UTF-8 file with a byte order mark loses the mark", async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const { prompts } = await runWithFile(Buffer.concat([bom, Buffer.from("- Check mail\n")]));
    expect(prompts).toEqual([`${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n- Check mail`]);
  });
});
