/**
 * The outbox's progress of a part whose send takes several platform messages (a file and the
 * caption that did not fit in it): each confirmed message is recorded with the entry, and a
 * retry — in the same process or after a restart — is told what was sent, so that it resumes
 * after it instead of posting it again. On the real `ChannelOutbox` over a `MemoryStore`.
 */
import { describe, expect, it } from "vitest";
import { ChannelSendError, type ChannelTarget, type OutboxSender } from "../src/index.js";
import { openStore, outboxOver } from "./channel-outbox-harness.js";

const target: ChannelTarget = { accountId: "default", chatType: "direct", chatId: "alice" };

/** A platform that keeps what it was sent; `failAt` names messages that fail once. */
function platform(failAt: Set<string> = new Set()) {
  const posted: string[] = [];
  const told: Array<readonly string[]> = [];
  let next = 0;
  /** Sends the pieces of a text part (split at "|") as messages of their own. */
  const send: OutboxSender = async (_entry, part, _index, _signal, progress) => {
    told.push(progress.sent);
    const pieces = part.kind === "text" ? part.text.split("|") : [];
    let first: string | undefined = progress.sent[0];
    for (const piece of pieces.slice(progress.sent.length)) {
      if (failAt.delete(piece)) {
        throw new ChannelSendError("room", `${piece} was refused`, {
          isRetryable: true,
          retryAfterMs: failAt.has("long-wait") ? 60_000 : 0,
        });
      }
      posted.push(piece);
      const id = `m${++next}`;
      first ??= id;
      await progress.record(id);
    }
    return { messageId: first! };
  };
  return { posted, told, send };
}

describe("ChannelOutbox: a part sent in several messages", () => {
  it("a retry resumes after the messages already confirmed", async () => {
    const store = await openStore();
    const room = platform(new Set(["caption-1"]));
    const outbox = outboxOver(store, room.send);
    await outbox.add({
      target,
      parts: [
        { kind: "text", text: "file|caption-1|caption-2" },
        { kind: "text", text: "next" },
      ],
    });
    outbox.resume();
    await outbox.idle();
    expect(room.posted).toEqual(["file", "caption-1", "caption-2", "next"]);
    // The retry was told the file went out; the next part started afresh.
    expect(room.told).toEqual([[], ["m1"], []]);
    expect(await outbox.list()).toEqual([]);
  });

  it("keeps the progress in the store: after a restart the part resumes where it stopped", async () => {
    const store = await openStore();
    const before = platform(new Set(["caption-2", "long-wait"]));
    const first = outboxOver(store, before.send);
    const entry = await first.add({
      target,
      parts: [{ kind: "text", text: "file|caption-1|caption-2" }],
    });
    first.resume();
    // A wait the platform asked for (a rate limit): recorded, but not as a failed attempt.
    for (let i = 0; i < 200 && (await first.get(entry.id))?.rateLimits !== 1; i++) {
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
    }
    expect(await first.get(entry.id)).toMatchObject({
      attempts: 0,
      rateLimitedMs: 60_000,
      progress: ["m1", "m2"],
    });
    await first.stop(); // the process stops during the retry's wait

    const after = platform();
    const second = outboxOver(store, after.send);
    second.resume();
    await second.idle();
    expect(before.posted).toEqual(["file", "caption-1"]);
    expect(after.told).toEqual([["m1", "m2"]]);
    expect(after.posted).toEqual(["caption-2"]);
    expect(await second.list()).toEqual([]);
  });

  it("stores a record the plugin did not wait for before it removes the delivered entry", async () => {
    const store = await openStore();
    let sends = 0;
    const outbox = outboxOver(store, async (_entry, _part, _index, _signal, progress) => {
      sends++;
      void progress.record("m1");
      void progress.record("m2");
      return { messageId: "m1" };
    });
    await outbox.add({ target, parts: [{ kind: "text", text: "one" }] });
    outbox.resume();
    await outbox.idle();
    expect(sends).toBe(1);
    expect(await outbox.deadLetters()).toEqual([]);
    // Nothing is left that would send the delivered message again.
    expect(await outbox.list()).toEqual([]);
    expect(await store.kv.keys("outbox:room:")).toEqual([]);
  });
});
