/**
 * The durable inbound queue across crashes. A worker accepts messages (enqueue resolved: the
 * sender got its acknowledgement) and acks each when its turn is done, and is killed with
 * SIGKILL at a random moment. After the restart:
 *
 * - every accepted message whose ack was not sent is replayed; none whose ack was
 *   acknowledged is;
 * - `replay` hands each pending message out once, in enqueue order, and once it is acked it
 *   never comes back;
 * - a sender retrying anything it delivered gets `duplicate: true` for every message the store
 *   had accepted, so each idempotency key is run exactly once after its last crash.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore } from "../src/index.js";
import {
  fixture,
  LineProcess,
  removeDir,
  removeStoreModule,
  storeModule,
  tempDir,
} from "./support.js";

let module: string;

beforeAll(async () => {
  module = await storeModule();
});

afterAll(async () => {
  await removeStoreModule();
});

describe("durable inbound queue across SIGKILL", () => {
  it("replays accepted, unfinished messages exactly once per idempotency key", async () => {
    const dir = await tempDir();
    try {
      for (let round = 0; round < 10; round++) {
        const worker = new LineProcess(fixture("queue-worker.mjs"), [dir, `r${round}-`], {
          STORE_FS_MODULE: module,
        });
        try {
          await worker.waitFor((l) => l.startsWith("done"), "a finished turn");
          await new Promise((r) => setTimeout(r, Math.random() * 30));
        } finally {
          await worker.kill();
        }
        const tried: string[] = [];
        const accepted = new Map<string, string>(); // key -> id
        const acking = new Set<string>();
        const done = new Set<string>();
        for (const line of worker.lines) {
          const [kind, a, b] = line.split(" ");
          if (kind === "try") tried.push(a!);
          if (kind === "accepted") accepted.set(b!, a!);
          if (kind === "acking") acking.add(a!);
          if (kind === "done") done.add(a!);
        }

        const store = createFsStore({ dir });
        await store.open();
        try {
          const replayed = await store.queue.replay({ limit: 1000 });
          const ids = replayed.map((m) => m.id);
          expect([...ids].sort(), "enqueue order").toEqual(ids);
          expect(new Set(replayed.map((m) => m.idempotencyKey)).size).toBe(replayed.length);
          for (const [key, id] of accepted) {
            if (!acking.has(id)) expect(ids, `accepted ${key} was lost`).toContain(id);
            if (done.has(id)) expect(ids, `finished ${key} came back`).not.toContain(id);
          }
          for (const message of replayed) {
            expect(message.deliveries).toBe(1);
            await store.queue.ack(message.id);
          }
          expect(await store.queue.replay()).toEqual([]);

          // Every sender retries what it delivered.
          let fresh = 0;
          for (const key of tried) {
            const { duplicate, message } = await store.queue.enqueue({
              idempotencyKey: key,
              sessionKey: "agent:main:main",
              payload: { key },
            });
            if (accepted.has(key)) {
              expect(duplicate, key).toBe(true);
              expect(message.id).toBe(accepted.get(key));
            }
            if (!duplicate) {
              fresh++;
              await store.queue.ack(message.id);
            }
          }
          // Only a delivery cut off before the store had it can be new (one per sender).
          expect(fresh).toBeLessThanOrEqual(3);
        } finally {
          await store.close();
        }
      }
      const store = createFsStore({ dir });
      await store.open();
      expect(await store.queue.pending()).toEqual([]);
      await store.close();
    } finally {
      await removeDir(dir);
    }
  });
});
