/**
 * Slack's 3 s answer window of the Events API (https://docs.slack.dev/apis/events-api/), over
 * real HTTP on 127.0.0.1 with msw as Slack's Web API and file server: an event whose files
 * are still downloading, or whose sender's name is still being looked up, is answered 200
 * (`pending`) once `ackDeadlineMs` passed, and handed over later; Slack's immediate retry of
 * it (`X-Slack-Retry-Reason: http_timeout`) is answered 200 and not handed over again; a
 * failure after the answer is logged. Time is driven by answers held open, never measured.
 */
import { InvalidArgumentError, type ReceiveResult } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createSlackChannel } from "../src/slack/index.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import { cleanUp, deferred, PNG, startedHttp, until } from "./slack/harness.js";
import {
  type EventsApiAnswer,
  eventCallback,
  type SlackHttpPlatform,
} from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

const ALICE = "U0ALICE001";
const DM = "D0ALICEDM1";

/** Slack's `message` event in Alice's DM with the bot (a `file_share` one with files). */
function dmMessage(
  platform: SlackHttpPlatform,
  text: string,
  files?: Array<Record<string, unknown>>,
) {
  const ts = platform.workspace.nextTs();
  return eventCallback({
    type: "message",
    ...(files === undefined ? {} : { subtype: "file_share", files, upload: false }),
    text,
    user: ALICE,
    ts,
    event_ts: ts,
    channel: DM,
    channel_type: "im",
  });
}

/** A request under way, with its answer once it came. */
function sending(promise: Promise<EventsApiAnswer>) {
  const state: { answer: EventsApiAnswer | undefined } = { answer: undefined };
  void promise.then((answer) => {
    state.answer = answer;
  });
  return state;
}

describe("Slack Events API: the 3 s answer window", () => {
  it("answers 200 while a file is still downloading, hands the message over once it is in, and answers Slack's retry 200 without handing it over again", async () => {
    const run = await startedHttp({ resolveUserNames: false, ackDeadlineMs: 50 });
    const download = deferred<void>();
    let requests = 0;
    const png = run.platform.workspace.addFile({
      name: "chart.png",
      mimetype: "image/png",
      bytes: PNG,
      hold: download.promise,
      onRequest: () => requests++,
    });
    const event = dmMessage(run.platform, "what does this show?", [png]);

    const first = sending(run.platform.send(event));
    const answer = await until("an answer while the download is held", () => first.answer);
    expect(answer).toMatchObject({ status: 200, body: { ok: true, status: "pending" } });
    expect(requests).toBe(1);
    expect(run.received).toEqual([]);

    // Slack's immediate retry of a delivery it counted as timed out.
    const retry = sending(run.platform.send(event, 1));
    const retried = await until(
      "the retry's answer while the download is held",
      () => retry.answer,
    );
    expect(retried).toMatchObject({ status: 200, body: { ok: true, status: "pending" } });
    expect(run.received).toEqual([]);

    download.resolve();
    await until("the message", () => run.received.length === 1);
    // A later message of the same conversation comes after anything still queued before it.
    const next = await run.platform.send(dmMessage(run.platform, "and this?"));
    expect(next.status).toBe(200);
    await until("the next message", () => run.received.length >= 2);
    expect(run.received.map((input) => input.text)).toEqual(["what does this show?", "and this?"]);
    expect(run.received[0]?.attachments?.[0]?.data).toBe(PNG.toString("base64"));
    expect(requests).toBe(1);
  });

  it("answers 200 while the sender's name is still being looked up (users.info)", async () => {
    const run = await startedHttp({ ackDeadlineMs: 50 });
    const lookup = deferred<void>();
    run.platform.workspace.answerNext("users.info", {
      hold: lookup.promise,
      body: {
        ok: true,
        user: {
          id: ALICE,
          team_id: FAKE_BOT.teamId,
          name: "alice",
          real_name: "Alice",
          profile: { real_name: "Alice", display_name: "Alice" },
        },
      },
    });
    const first = sending(run.platform.send(dmMessage(run.platform, "hello")));
    const answer = await until("an answer while users.info is held", () => first.answer);
    expect(answer).toMatchObject({ status: 200, body: { status: "pending" } });
    expect(run.received).toEqual([]);
    lookup.resolve();
    await until("the message", () => run.received.length === 1);
    expect(run.received[0]?.peer).toEqual({ id: ALICE, name: "Alice" });
  });

  it("answers with the host's own answer when it took the event before the deadline", async () => {
    const run = await startedHttp({ resolveUserNames: false, ackDeadlineMs: 2_999 });
    const answer = await run.platform.send(dmMessage(run.platform, "quick"));
    expect(answer).toMatchObject({ status: 200, body: { ok: true, status: "accepted" } });
    expect(run.received).toHaveLength(1);
  });

  it("logs a failure that comes after the 200, naming the event", async () => {
    const taken = deferred<ReceiveResult>();
    const run = await startedHttp(
      { resolveUserNames: false, ackDeadlineMs: 50 },
      () => taken.promise,
    );
    const event = dmMessage(run.platform, "doomed");
    const answer = await run.platform.send(event);
    expect(answer).toMatchObject({ status: 200, body: { status: "pending" } });
    await until("the host to get it", () => run.received.length === 1);
    taken.reject(new Error("the store is down"));
    const logged = await until("the failure logged", () =>
      run.logs.find((entry) => entry.level === "error"),
    );
    expect(logged.message).toContain("lost");
    expect(logged.data?.eventId).toBe(event.event_id);
    expect(String(logged.data?.error)).toContain("the store is down");
  });

  it("refuses an ack deadline Slack would not wait for", () => {
    const base = { botToken: "xoxb-1", signingSecret: "secret" };
    for (const ackDeadlineMs of [0, 3_000, 2.5]) {
      expect(() => createSlackChannel({ ...base, ackDeadlineMs })).toThrow(InvalidArgumentError);
    }
    expect(() => createSlackChannel({ ...base, ackDeadlineMs: 2_999 })).not.toThrow();
  });
});
