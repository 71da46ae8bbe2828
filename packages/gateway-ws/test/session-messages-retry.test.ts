/**
 * `sessions.messages.subscribe` when a run's save fails, over a real socket: the core writes a
 * discard marker (`cause: "save-failed"`) and makes the attempt again, saving the user's
 * message anew. A follower is sent each message once, never the cancelled attempt's copy as
 * well as the retry's, and never an answer of the cancelled attempt that the retry replaced.
 */
import { type JsonObject, StoreError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  deferred,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:telegram:direct:ada";

const textOf = (payload: Wire) => `${payload.message.role}:${payload.message.content[0].text}`;

/** The `session.message` texts a client has been sent so far, for {@link KEY}. */
function textsOf(client: TestClient): string[] {
  return client.events
    .filter((e) => e.event === "session.message" && e.payload.sessionKey === KEY)
    .map((e) => textOf(e.payload));
}

/**
 * Makes the stack's store fail the first append of an assistant message: `fail` writes
 * nothing; `lose` writes it and then throws (the reply was lost after the store applied it).
 * Resolves the returned promise once it has failed. With `markers`, every append of a discard
 * marker fails too (counted in `markers.failures`), so the run keeps waiting to run again.
 */
function failAnswerSaveOnce(
  stack: Stack,
  mode: "fail" | "lose",
  markers?: { failures: number },
): Promise<void> {
  const transcripts = stack.store.transcripts;
  const append = transcripts.append.bind(transcripts);
  let failed: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    failed = resolve;
  });
  let armed = true;
  transcripts.append = async (sessionKey: string, entries: JsonObject[]) => {
    if (markers !== undefined && entries.some((e) => e.discarded === true)) {
      markers.failures++;
      throw new StoreError("STORE_UNAVAILABLE", "the disk is still down");
    }
    const answer = entries.some((e) => (e.message as JsonObject | undefined)?.role === "assistant");
    if (!armed || !answer) return append(sessionKey, entries);
    armed = false;
    try {
      if (mode === "fail") throw new StoreError("STORE_UNAVAILABLE", "the disk is briefly down");
      const seq = await append(sessionKey, entries);
      throw new StoreError("STORE_UNAVAILABLE", `the reply to an append (seq ${seq}) was lost`);
    } finally {
      failed();
    }
  };
  return done;
}

/** Sends `text` from a channel, waits for its run, then for its answer `answer` on `follower`. */
async function exchange(stack: Stack, follower: TestClient, text: string, answer: string) {
  await (await stack.runtime.session(KEY).send(text)).result;
  // The feed sends in transcript order: once this answer is in, all before it is too.
  await follower.waitEvent(
    "session.message",
    (p) => p.sessionKey === KEY && textOf(p) === `assistant:${answer}`,
  );
}

/** A stack answering `responses` in turn, and a client following {@link KEY}'s messages. */
async function followed(responses: string[]): Promise<{ stack: Stack; follower: TestClient }> {
  const stack = await startStack({ responses: responses.map((text) => ({ text })) });
  const follower = await TestClient.connect(stack.url, { token: TOKEN });
  await follower.request("sessions.messages.subscribe", { key: KEY });
  return { stack, follower };
}

/**
 * Two exchanges ("hi, it's Ada", then "bye" answered "Bye!") on a stack answering `responses`,
 * the first answer's save failing once in `mode`; checks that the follower was sent each
 * message once, the first exchange's answer being `answer` (the retry's). Returns the stack.
 */
async function exchangesAfterFailedSave(
  responses: string[],
  mode: "fail" | "lose",
  answer: string,
): Promise<Stack> {
  const { stack, follower } = await followed(responses);
  const failed = failAnswerSaveOnce(stack, mode);
  await exchange(stack, follower, "hi, it's Ada", answer);
  await failed;
  await exchange(stack, follower, "bye", "Bye!");
  expect(textsOf(follower)).toEqual([
    "user:hi, it's Ada",
    `assistant:${answer}`,
    "user:bye",
    "assistant:Bye!",
  ]);
  return stack;
}

describe("sessions.messages.subscribe after a failed save", () => {
  it("sends the user's message once when the answer's save failed and the run ran again", async () => {
    const stack = await exchangesAfterFailedSave(
      ["Hello Ada!", "Hello Ada!", "Bye!"],
      "fail",
      "Hello Ada!",
    );
    // The transcript does hold the cancelled attempt's user message and its marker.
    const records = await stack.store.transcripts.read(KEY, { afterSeq: 0 });
    expect(records.filter((r) => r.entry.cause === "save-failed")).toHaveLength(1);
  });

  it("sends each message once when the answer was saved but the reply was lost", async () => {
    await exchangesAfterFailedSave(["Hello Ada!", "Hello Ada!", "Bye!"], "lose", "Hello Ada!");
  });

  it("does not send the cancelled attempt's answer when the retry answers differently", async () => {
    await exchangesAfterFailedSave(["first try", "second try", "Bye!"], "lose", "second try");
  });

  it("sends a held-back answer after all when the run is aborted before it could run again", async () => {
    const { stack, follower } = await followed(["first try", "Bye!"]);
    const markers = { failures: 0 };
    const failed = failAnswerSaveOnce(stack, "lose", markers);
    const run = await stack.runtime.session(KEY).send("hi, it's Ada");
    await failed;
    // It tried to cancel the attempt (and could not): abort it while it waits to run again.
    await waitFor("a discard marker's failed append", () => markers.failures > 0);
    await run.abort();
    expect((await run.result).status).toBe("aborted");
    // No marker was written: the attempt's answer stayed in the transcript, and is shown.
    await follower.waitEvent(
      "session.message",
      (p) => p.sessionKey === KEY && textOf(p) === "assistant:first try",
    );
    expect(textsOf(follower)).toEqual(["user:hi, it's Ada", "assistant:first try"]);
  });

  it("does not send a run that a rewind cancelled before the feed read it", async () => {
    const { stack, follower } = await followed(["undone", "Bye!"]);
    // A slow store: the feed's reads forward wait until the gate opens.
    const transcripts = stack.store.transcripts;
    const read = transcripts.read.bind(transcripts);
    const gate = deferred();
    let waiting = 0;
    transcripts.read = async (sessionKey, options) => {
      if (options?.afterSeq !== undefined && options.order !== "desc") {
        waiting++;
        await gate.promise;
      }
      return read(sessionKey, options);
    };
    const session = stack.runtime.session(KEY);
    await (await session.send("take this back")).result;
    await waitFor("the feed's read", () => waiting > 0);
    expect((await session.rewind()).removedMessages).toBe(2);
    gate.resolve();
    await exchange(stack, follower, "bye", "Bye!");
    expect(textsOf(follower)).toEqual(["user:bye", "assistant:Bye!"]);
  });
});
