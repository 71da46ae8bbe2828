/**
 * The on-disk layout is part of the package's promise (the README documents it): a person can
 * find a session's files by its agent and key, and read every file as JSON or JSONL.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, encodeFileName, type FsStore } from "../src/index.js";
import { removeDir, snapshot, tempDir } from "./support.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await tempDir();
  store = createFsStore({ dir });
  await store.open();
});

afterEach(async () => {
  await store.close();
  await removeDir(dir);
});

async function writeOneOfEach(): Promise<void> {
  await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 2 });
  await store.sessions.put({ key: "cron:nightly", agentId: "ops", createdAt: 1, updatedAt: 3 });
  await store.transcripts.append("agent:main:main", [
    { role: "user", text: "hi" },
    { role: "assistant", text: "hello" },
  ]);
  await store.approvals.put("agent:main:main", {
    pattern: "exec:ls *",
    decision: "allow",
    decidedAt: 4,
  });
  await store.cron.putJob({ id: "nightly", agentId: "ops", schedule: "0 3 * * *" });
  await store.cron.appendRun({ jobId: "nightly", startedAt: 5, status: "ok" });
  await store.devices.put({ deviceId: "phone", name: "Phone" });
  await store.devices.putToken({ tokenHash: "ab12", deviceId: "phone" });
  await store.queue.enqueue({
    idempotencyKey: "tg:1",
    sessionKey: "agent:main:main",
    payload: { text: "hi" },
  });
  await store.kv.set("presence:alice", { online: true });
  await store.locks.acquire("cron:nightly", { owner: "node-1", ttlMs: 60_000 });
}

const read = (file: string) => readFile(path.join(dir, file), "utf8");
const jsonl = async (file: string) =>
  (await read(file))
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as unknown);

describe("on-disk layout", () => {
  it("puts each session's files under its agent, and the rest in one file or folder per kind", async () => {
    await writeOneOfEach();
    const files = [...(await snapshot(dir)).keys()].sort();
    expect(files).toEqual([
      "agents/main/approvals/agent+main+main.json",
      "agents/main/sessions.jsonl",
      "agents/main/transcripts/agent+main+main.jsonl",
      "beamclaw-store.json",
      "cron/jobs/nightly.json",
      "cron/runs/nightly.jsonl",
      "device-tokens/ab12.json",
      "devices/phone.json",
      "kv.jsonl",
      "locks.jsonl",
      "queue.jsonl",
      "store.lock",
      "unscoped/sessions.jsonl",
    ]);
  });

  it("writes every file as JSON or JSONL a person can read, in the documented shapes", async () => {
    await writeOneOfEach();
    expect(JSON.parse(await read("beamclaw-store.json"))).toEqual({
      format: "beamclaw-store-fs",
      version: 1,
      createdAt: expect.any(String),
    });
    expect(JSON.parse(await read("store.lock"))).toEqual({
      pid: process.pid,
      hostname: expect.any(String),
      bootId: expect.any(String),
      startTime: expect.any(Number),
      pidNamespace: expect.stringMatching(/^pid:\[\d+\]$/),
      since: expect.any(String),
      nonce: expect.any(String),
    });
    expect(await jsonl("agents/main/sessions.jsonl")).toEqual([
      {
        op: "put",
        record: { key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 2 },
      },
    ]);
    expect(await jsonl("unscoped/sessions.jsonl")).toEqual([
      { op: "put", record: { key: "cron:nightly", agentId: "ops", createdAt: 1, updatedAt: 3 } },
    ]);
    expect(await read("agents/main/transcripts/agent+main+main.jsonl")).toBe(
      '{"seq":1,"entry":{"role":"user","text":"hi"},"more":true}\n' +
        '{"seq":2,"entry":{"role":"assistant","text":"hello"}}\n',
    );
    expect(JSON.parse(await read("agents/main/approvals/agent+main+main.json"))).toEqual({
      sessionKey: "agent:main:main",
      approvals: [{ pattern: "exec:ls *", decision: "allow", decidedAt: 4 }],
    });
    expect(JSON.parse(await read("cron/jobs/nightly.json"))).toEqual({
      id: "nightly",
      agentId: "ops",
      schedule: "0 3 * * *",
    });
    expect(await jsonl("cron/runs/nightly.jsonl")).toEqual([
      { jobId: "nightly", startedAt: 5, status: "ok" },
    ]);
    expect(JSON.parse(await read("devices/phone.json"))).toEqual({
      deviceId: "phone",
      name: "Phone",
    });
    expect(JSON.parse(await read("device-tokens/ab12.json"))).toEqual({
      tokenHash: "ab12",
      deviceId: "phone",
    });
    expect(await jsonl("queue.jsonl")).toEqual([
      {
        op: "enqueue",
        message: {
          id: "0000000000000001",
          idempotencyKey: "tg:1",
          sessionKey: "agent:main:main",
          payload: { text: "hi" },
          enqueuedAt: expect.any(Number),
          deliveries: 0,
        },
      },
    ]);
    expect(await jsonl("kv.jsonl")).toEqual([
      { op: "set", key: "presence:alice", value: { online: true } },
    ]);
    expect(await jsonl("locks.jsonl")).toEqual([
      {
        op: "lease",
        name: "cron:nightly",
        owner: "node-1",
        token: 1,
        expiresAt: expect.any(Number),
      },
    ]);
  });

  it("records deletes, acks and deliveries as lines a person can follow", async () => {
    await store.sessions.put({ key: "agent:main:x", agentId: "main", createdAt: 1, updatedAt: 1 });
    await store.sessions.delete("agent:main:x");
    const { message } = await store.queue.enqueue({
      idempotencyKey: "k",
      sessionKey: "s",
      payload: {},
    });
    await store.queue.replay();
    await store.queue.ack(message.id);
    await store.kv.set("k", 1, { ttlMs: 60_000 });
    await store.kv.delete("k");
    expect((await jsonl("agents/main/sessions.jsonl")).at(-1)).toEqual({
      op: "delete",
      key: "agent:main:x",
    });
    expect((await jsonl("queue.jsonl")).slice(1)).toEqual([{ op: "deliver", ids: [message.id] }]);
    // The ack goes to the acked file of the current period, with the message, for dedupe.
    const [ackedFile, ...more] = await readdir(path.join(dir, "queue-acked"));
    expect(more).toEqual([]);
    expect(ackedFile).toMatch(/^\d+\.jsonl$/);
    expect(await jsonl(`queue-acked/${ackedFile}`)).toEqual([
      { op: "acked", message: { ...message, deliveries: 1 }, at: expect.any(Number) },
    ]);
    expect(await jsonl("kv.jsonl")).toEqual([
      { op: "set", key: "k", value: 1, expiresAt: expect.any(Number) },
      { op: "delete", key: "k" },
    ]);
  });

  it("names files after their keys, readably, and never lets a key leave its folder", async () => {
    const keys = [
      "agent:Ops:Main",
      "agent:../../etc:x",
      "../../outside",
      "a/b\\c",
      ".hidden",
      "con",
      "CON",
      `agent:main:${"x".repeat(300)}`,
    ];
    for (const key of keys) await store.transcripts.append(key, [{ key }]);
    const files = [...(await snapshot(dir)).keys()].filter((f) => f.includes("/transcripts/"));
    expect(files.sort()).toEqual(
      [
        "agents/%4Fps/transcripts/agent+%4Fps+%4Dain.jsonl",
        "agents/%2E.%2F..%2Fetc/transcripts/agent+..%2F..%2Fetc+x.jsonl",
        "unscoped/transcripts/%2E.%2F..%2Foutside.jsonl",
        "unscoped/transcripts/a%2Fb%5Cc.jsonl",
        "unscoped/transcripts/%2Ehidden.jsonl",
        "unscoped/transcripts/%63on.jsonl",
        "unscoped/transcripts/%43%4F%4E.jsonl",
        `agents/main/transcripts/${encodeFileName(keys[7]!)}.jsonl`,
      ].sort(),
    );
    // "%2E.%2F..%2Fetc" is one segment: no ".." directory is ever walked.
    for (const file of files) {
      expect(file.split("/").every((segment) => segment !== ".." && segment !== ".")).toBe(true);
    }
    const long = encodeFileName(keys[7]!);
    expect(long).toMatch(/^agent\+main\+x+~[0-9a-f]{64}$/);
    expect(long.length).toBeLessThanOrEqual(160);
    for (const key of keys) {
      expect((await store.transcripts.read(key))[0]?.entry).toEqual({ key });
    }
  });
});
