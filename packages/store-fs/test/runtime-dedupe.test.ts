/**
 * An agent runtime over store-fs: a message sent with an idempotency key is remembered on
 * disk once its run is done (a retry, even after a restart, is a duplicate); one sent without
 * a key leaves the queue without a dedupe record, so nothing of it reaches `queue-acked/`.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { AgentRuntime, createProviderChain } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { QUEUE_ACKED_DIR } from "../src/queue.js";
import { removeDir, tempDir } from "./support.js";

const KEY = "agent:main:main";
let dir: string;
let store: FsStore | undefined;
let runtime: AgentRuntime | undefined;

beforeEach(async () => {
  dir = await tempDir();
});

afterEach(async () => {
  await runtime?.stop();
  runtime = undefined;
  await store?.close();
  store = undefined;
  await removeDir(dir);
});

async function start(): Promise<AgentRuntime> {
  store = createFsStore({ dir, fsync: false });
  await store.open();
  const provider = createScriptedProvider({ responses: ["one", "two", "three", "four"] });
  runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: ["scripted/model"] }),
    agents: [{ id: "main", model: "scripted/model" }],
  });
  await runtime.start();
  return runtime;
}

/** Every line of every file in `queue-acked/` (none if the directory is not there). */
async function ackedLines(): Promise<string[]> {
  const ackedDir = path.join(dir, QUEUE_ACKED_DIR);
  const files = await readdir(ackedDir).catch(() => [] as string[]);
  const lines: string[] = [];
  for (const file of files) {
    const text = await readFile(path.join(ackedDir, file), "utf8");
    lines.push(...text.split("\n").filter((line) => line.length > 0));
  }
  return lines;
}

describe("an agent runtime's messages in store-fs's queue", () => {
  it("remembers a caller's idempotency key across a restart, and keeps nothing of an unkeyed message", async () => {
    const first = await start();
    const session = first.session(KEY);
    const unkeyed = await session.send("no key");
    const keyed = await session.send("with a key", { idempotencyKey: "chat:42" });
    expect((await unkeyed.result).status).toBe("completed");
    expect((await keyed.result).status).toBe("completed");
    await first.stop();
    runtime = undefined;
    await store!.close();

    const acked = await ackedLines();
    expect(acked).toHaveLength(1);
    expect(acked[0]).toContain('"chat:42"');
    expect(acked.join("\n")).not.toContain("no key");

    const second = await start();
    expect(await store!.queue.pending()).toEqual([]);
    const retry = await second.session(KEY).send("with a key", { idempotencyKey: "chat:42" });
    expect(retry.disposition).toBe("duplicate");
    await expect(retry.result).rejects.toMatchObject({ code: "DUPLICATE" });
    // The unkeyed message's made-up key (its run id) is not remembered.
    const probe = await store!.queue.enqueue({
      idempotencyKey: `auto:${unkeyed.runId}`,
      sessionKey: "agent:main:probe",
      payload: {},
    });
    expect(probe.duplicate).toBe(false);
    await store!.queue.discard(probe.message.id);
  });
});
