/**
 * The Slack channel's Events API endpoint over real HTTP on 127.0.0.1: Slack's request
 * signatures (its documented example included) and replay window, `url_verification`, the
 * 200 that comes only once the host took the event, Slack's redeliveries answered once, and
 * the answers that make Slack retry or give up.
 */
import { InvalidInboundError, NoProcessError, type ReceiveResult } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  createSlackChannel,
  SlackSignatureError,
  signSlackRequest,
  verifySlackRequest,
} from "../src/slack/index.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import { cleanUp, cleanups, deferred, hosted, startedHttp, until } from "./slack/harness.js";
import { eventCallback, SIGNING_SECRET, SlackHttpPlatform } from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

/** Slack's documented `message.channels` event. */
function channelMessage(ts: string, text: string) {
  return {
    client_msg_id: `cm-${ts}`,
    type: "message",
    channel: "C123ABC456",
    user: "U123ABC456",
    text,
    ts,
    event_ts: ts,
    channel_type: "channel",
  };
}

describe("Slack request signatures", () => {
  // https://docs.slack.dev/authentication/verifying-requests-from-slack: the worked example.
  const documented = {
    secret: "8f742231b10e8888abcd99yyyzzz85a5",
    timestamp: "1531420618",
    body: "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
    signature: "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
  };

  it("computes and accepts the signature of Slack's documented example", () => {
    expect(signSlackRequest(documented.secret, documented.timestamp, documented.body)).toBe(
      documented.signature,
    );
    expect(() =>
      verifySlackRequest(
        documented.secret,
        documented.body,
        { signature: documented.signature, timestamp: documented.timestamp },
        { now: 1531420618_000 + 30_000 },
      ),
    ).not.toThrow();
  });

  it("names what is wrong: missing, malformed, mismatch, expired", () => {
    const now = 1531420618_000;
    const problem = (headers: { signature?: string; timestamp?: string }, at = now) => {
      try {
        verifySlackRequest(
          documented.secret,
          documented.body,
          { signature: headers.signature, timestamp: headers.timestamp },
          { now: at },
        );
        return "accepted";
      } catch (error) {
        return SlackSignatureError.isInstance(error) ? error.problem : "other";
      }
    };
    expect(problem({ timestamp: documented.timestamp })).toBe("missing");
    expect(problem({ signature: documented.signature })).toBe("missing");
    expect(problem({ signature: "v1=abc", timestamp: documented.timestamp })).toBe("malformed");
    expect(problem({ signature: documented.signature, timestamp: "yesterday" })).toBe("malformed");
    expect(problem({ signature: `v0=${"0".repeat(64)}`, timestamp: documented.timestamp })).toBe(
      "mismatch",
    );
    const signed = { signature: documented.signature, timestamp: documented.timestamp };
    expect(problem(signed, now + 5 * 60_000 + 1_000)).toBe("expired");
    expect(problem(signed, now - 5 * 60_000 - 1_000)).toBe("expired");
    expect(problem(signed, now + 4 * 60_000)).toBe("accepted");
  });
});

describe("Slack Events API endpoint", () => {
  it("answers Slack's url_verification challenge", async () => {
    const { platform, received } = await startedHttp();
    const answer = await platform.send({
      token: "Jhj5dZrVaK7ZwHHjRyZWjbDl",
      challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
      type: "url_verification",
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    });
    expect(received).toEqual([]);
  });

  it("refuses missing, wrong and stale signatures with 401, and the host never sees the event", async () => {
    const { platform, received } = await startedHttp();
    const body = JSON.stringify(eventCallback(channelMessage(platform.workspace.nextTs(), "hi")));
    const now = Math.floor(Date.now() / 1000);
    const stale = now - 6 * 60;
    const attempts: Array<Record<string, string>> = [
      {},
      { "x-slack-request-timestamp": String(now) },
      {
        "x-slack-request-timestamp": String(now),
        "x-slack-signature": signSlackRequest("another-apps-secret", now, body),
      },
      {
        "x-slack-request-timestamp": String(now),
        "x-slack-signature": signSlackRequest(SIGNING_SECRET, now, `${body} `),
      },
      {
        "x-slack-request-timestamp": String(stale),
        "x-slack-signature": signSlackRequest(SIGNING_SECRET, stale, body),
      },
    ];
    const answers = [];
    for (const headers of attempts) answers.push(await platform.post(body, headers));
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);
    expect(answers.map((a) => a.body.problem)).toEqual([
      "missing",
      "missing",
      "mismatch",
      "mismatch",
      "expired",
    ]);
    expect(received).toEqual([]);
  });

  it("answers 200 only after the host took the event", async () => {
    const taken = deferred<ReceiveResult>();
    const { platform, received } = await startedHttp({}, () => taken.promise);
    let answered = false;
    const answer = platform
      .send(eventCallback(channelMessage(platform.workspace.nextTs(), "wait for it")))
      .then((a) => {
        answered = true;
        return a;
      });
    await until("the host to get the message", () => received.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(answered).toBe(false);
    taken.resolve({ status: "accepted" });
    expect(await answer).toMatchObject({ status: 200, body: { status: "accepted" } });
  });

  it("answers 503 while the host cannot take messages, so that Slack retries", async () => {
    const { platform } = await startedHttp({}, () => {
      throw new NoProcessError("restarting");
    });
    const answer = await platform.send(
      eventCallback(channelMessage(platform.workspace.nextTs(), "later")),
    );
    expect(answer.status).toBe(503);
    expect(answer.headers["retry-after"]).toBe("5");
  });

  it("answers 500 when the host failed, so that Slack retries", async () => {
    const { platform } = await startedHttp({}, () => {
      throw new Error("the store is down");
    });
    const answer = await platform.send(
      eventCallback(channelMessage(platform.workspace.nextTs(), "later")),
    );
    expect(answer.status).toBe(500);
    expect(answer.headers["x-slack-no-retry"]).toBeUndefined();
  });

  it("answers 400 with X-Slack-No-Retry for what a retry cannot fix", async () => {
    const { platform } = await startedHttp({}, () => {
      throw new InvalidInboundError("slack", "peer.id", "is too long");
    });
    const notJson = "not json";
    const now = Math.floor(Date.now() / 1000);
    const first = await platform.post(notJson, {
      "x-slack-request-timestamp": String(now),
      "x-slack-signature": signSlackRequest(SIGNING_SECRET, now, notJson),
    });
    const refused = await platform.send(
      eventCallback(channelMessage(platform.workspace.nextTs(), "odd")),
    );
    expect([first.status, refused.status]).toEqual([400, 400]);
    expect(first.headers["x-slack-no-retry"]).toBe("1");
    expect(refused.headers["x-slack-no-retry"]).toBe("1");
    expect(refused.body.field).toBe("peer.id");
  });

  it("answers 404 to another path, 405 to another method, 413 to a body over the limit", async () => {
    const { platform } = await startedHttp({ maxBodyBytes: 1024 });
    expect((await platform.post("{}", {}, { path: "/elsewhere" })).status).toBe(404);
    expect((await platform.post("", {}, { method: "GET" })).status).toBe(405);
    expect((await platform.post("x".repeat(2048))).status).toBe(413);
  });

  it("acknowledges events that are not a person's message with 200 and hands nothing on", async () => {
    const { platform, received } = await startedHttp();
    const ts = platform.workspace.nextTs();
    const answers = await Promise.all([
      platform.send(eventCallback({ ...channelMessage(ts, "bot"), bot_id: "B0OTHER01" })),
      platform.send(eventCallback({ type: "reaction_added", user: "U1", reaction: "tada" })),
      platform.send({ token: "XXYYZZ", team_id: FAKE_BOT.teamId, type: "app_rate_limited" }),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(received).toEqual([]);
  });

  it("answers Slack's redeliveries (X-Slack-Retry-Num) once: the host suppresses the duplicates", async () => {
    const platform = new SlackHttpPlatform();
    cleanups.push(() => platform.close());
    const plugin = platform.attach(createSlackChannel(platform.channelOptions()));
    await hosted(plugin);
    const payload = eventCallback({
      ...channelMessage(platform.workspace.nextTs(), "deploy status?"),
      channel: "D0DIRECT01",
      channel_type: "im",
    });
    const answers = [
      await platform.send(payload),
      await platform.send(payload, 1),
      await platform.send(payload, 2),
    ];
    expect(answers.map((a) => [a.status, a.body.status])).toEqual([
      [200, "accepted"],
      [200, "duplicate"],
      [200, "duplicate"],
    ]);
    await until("the reply", () => platform.workspace.posted.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(platform.workspace.posted.map((p) => [p.channel, p.text])).toEqual([
      ["D0DIRECT01", "deploy status?"],
    ]);
  });
});
