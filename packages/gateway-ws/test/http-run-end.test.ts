/**
 * How `POST /v1/chat/completions` ends a run that did not complete, over a real socket: a run
 * cut at its time limit or aborted by the gateway stopping is an error (never a `stop` that
 * reads as a finished answer), and a client that leaves before its run starts gets no run.
 */
import { createServer, request as httpRequest, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ProviderError, type Transcriber } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import {
  AUTH,
  httpCall as call,
  closeClients,
  deferred,
  type Reply,
  sseData,
  startStack,
  stopStacks,
  waitFor,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** A response that starts, says a little and then never ends (until aborted). */
const ENDLESS: ScriptEntry = {
  events: [
    { type: "response-start", model: "m1" },
    { type: "text-delta", text: "part" },
    { type: "delay", ms: Number.POSITIVE_INFINITY },
  ],
};

/** Opens a streaming completion; `firstData` settles with its first bytes, `text` at its end. */
function openStream(port: number, body: unknown) {
  const first = deferred();
  const all = deferred<string>();
  const req = httpRequest(
    {
      host: "127.0.0.1",
      port,
      path: "/v1/chat/completions",
      method: "POST",
      agent: false,
      headers: { ...AUTH, "content-type": "application/json" },
    },
    (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        first.resolve();
      });
      res.on("end", () => all.resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", all.reject);
    },
  );
  req.on("error", (error) => {
    first.reject(error);
    all.reject(error);
  });
  req.end(JSON.stringify(body));
  return { firstData: first.promise, text: all.promise };
}

describe("a run that does not complete", () => {
  it("past its time limit is a 504 RUN_TIMEOUT, not an empty answer that stopped", async () => {
    const stack = await startStack({
      responses: [ENDLESS],
      agents: [{ id: "main", model: "scripted/m1", timeoutMs: 100 }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", messages: [{ role: "user", content: "go" }] },
    });
    expect(reply.status).toBe(504);
    expect(reply.json.error).toMatchObject({
      type: "server_error",
      param: null,
      code: "RUN_TIMEOUT",
    });
  });

  it("past its time limit ends a stream with an error, without a finish_reason", async () => {
    const stack = await startStack({
      responses: [ENDLESS],
      agents: [{ id: "main", model: "scripted/m1", timeoutMs: 100 }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", stream: true, messages: [{ role: "user", content: "go" }] },
    });
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.at(-2).error).toMatchObject({ type: "server_error", code: "RUN_TIMEOUT" });
    const chunks = events.filter((e) => e !== "[DONE]" && e.error === undefined);
    expect(chunks.map((c) => c.choices[0].delta.content ?? "").join("")).toBe("part");
    expect(chunks.every((c) => c.choices[0].finish_reason === null)).toBe(true);
  });

  it("aborted by the gateway stopping ends its stream with an error", async () => {
    const stack = await startStack({ responses: [ENDLESS] });
    const stream = openStream(stack.port, {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "go" }],
    });
    await stream.firstData;
    await stack.gateway.stop();
    const events = sseData(await stream.text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.at(-2).error).toMatchObject({ type: "server_error", param: null });
    const chunks = events.filter((e) => e !== "[DONE]" && e.error === undefined);
    expect(chunks.every((c) => c.choices[0].finish_reason === null)).toBe(true);
  });

  it("is never started for a client that left while its audio was transcribed", async () => {
    const called = deferred();
    const release = deferred();
    const transcriber: Transcriber = {
      id: "slow-stt",
      async transcribe() {
        called.resolve();
        await release.promise;
        return { text: "book a table" };
      },
    };
    // The second request's answer; the first, were it run, would never end.
    const answer: ScriptEntry = (request) =>
      JSON.stringify(request.messages).includes("second") ? "ok" : ENDLESS;
    const stack = await startStack({
      responses: [answer, answer],
      gateway: { transcriber, listen: false },
    });
    const starts: string[] = [];
    stack.runtime.pubsub.subscribe("events:global", (e: { type?: string; runId?: string }) => {
      if (e.type === "run-start" && e.runId !== undefined) starts.push(e.runId);
    });
    // A front server, so that the test sees when the gateway's response learns of the close.
    const responses: ServerResponse[] = [];
    const front = createServer((req, res) => {
      responses.push(res);
      stack.gateway.handleRequest(req, res);
    });
    await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = front.address() as AddressInfo;
      const req = httpRequest({
        host: "127.0.0.1",
        port,
        path: "/v1/chat/completions",
        method: "POST",
        agent: false,
        headers: { ...AUTH, "content-type": "application/json" },
      });
      req.on("error", () => undefined);
      req.end(
        JSON.stringify({
          model: "beamclaw",
          user: "leaver",
          messages: [
            {
              role: "user",
              content: [
                {
                  type: "input_audio",
                  input_audio: { data: Buffer.from("x").toString("base64"), format: "mp3" },
                },
              ],
            },
          ],
        }),
      );
      await called.promise;
      req.destroy();
      await waitFor("the gateway to see the client leave", () => responses[0]?.destroyed);
      release.resolve();
      let second: Reply | undefined;
      void call(port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: {
          model: "beamclaw",
          user: "leaver",
          messages: [{ role: "user", content: "second" }],
        },
      }).then((reply) => {
        second = reply;
      });
      // Had the first run started, it would hold the session and this answer would never come.
      await waitFor("the second request's answer", () => second);
      expect(second?.status).toBe(200);
      expect(second?.json.choices[0].message.content).toBe("ok");
      expect(starts).toHaveLength(1);
      expect(stack.provider.requests).toHaveLength(1);
    } finally {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    }
  });
});

/**
 * A turn of a kept session (the `user` field or a session header) saved its user message
 * before the run failed: the OpenAI SDKs, which retry 502 and 504 by default, would run it
 * again and save the message twice. Those answers carry `x-should-retry: false`.
 */
describe("a kept session's turn that did not complete", () => {
  const NETWORK_FAILURE: ScriptEntry = {
    error: new ProviderError("connect ECONNREFUSED", { kind: "network", provider: "scripted" }),
  };

  it("a failed model call is a 502 with x-should-retry: false, on both endpoints", async () => {
    const stack = await startStack({
      responses: [NETWORK_FAILURE, NETWORK_FAILURE],
      gateway: { http: { responses: true } },
    });
    const chat = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", user: "alice", messages: [{ role: "user", content: "go" }] },
    });
    expect(chat.status).toBe(502);
    expect(chat.headers["x-should-retry"]).toBe("false");
    const responses = await call(stack.port, "/v1/responses", {
      method: "POST",
      headers: { ...AUTH, "x-beamclaw-session-key": "agent:main:kept" },
      body: { model: "beamclaw", input: "go" },
    });
    expect(responses.status).toBe(502);
    expect(responses.headers["x-should-retry"]).toBe("false");
  });

  it("a run past its time limit is a 504 with x-should-retry: false", async () => {
    const stack = await startStack({
      responses: [ENDLESS],
      agents: [{ id: "main", model: "scripted/m1", timeoutMs: 100 }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: { ...AUTH, "x-beamclaw-session-key": "agent:main:kept" },
      body: { model: "beamclaw", messages: [{ role: "user", content: "go" }] },
    });
    expect(reply.status).toBe(504);
    expect(reply.json.error).toMatchObject({ code: "RUN_TIMEOUT" });
    expect(reply.headers["x-should-retry"]).toBe("false");
  });
});
