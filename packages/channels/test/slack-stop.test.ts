/**
 * The Slack channel's `stop()` while work of the channel is under way, over real sockets: a
 * fake Socket Mode endpoint (`ws` on 127.0.0.1) or signed POSTs to the channel's Events API
 * endpoint, the Web API faked by msw. A stop during `start()` resolves only once the start
 * closed what it opened (its WebSocket, its HTTP server); a stop while the host takes an
 * event lets the host finish (for up to 5 s) and acknowledges the event — on its Socket Mode
 * connection, or with the 200 the Events API request waits for — so that Slack does not
 * deliver it again; an event arriving meanwhile is left for Slack to redeliver.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { AbortedError, type ReceiveResult } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import { createSlackChannel, type SlackChannel } from "../src/slack/index.js";
import { closeFakeSlackApi } from "./slack/fake-slack-api.js";
import {
  cleanUp,
  cleanups,
  deferred,
  recordingContext,
  recordingLogger,
  startedHttp,
  startedSocketMode,
  until,
} from "./slack/harness.js";
import {
  eventCallback,
  messageEvent,
  SlackHttpPlatform,
  SlackSocketModePlatform,
} from "./slack/slack-platform.js";

afterEach(async () => {
  vi.restoreAllMocks();
  await cleanUp();
});
afterAll(() => closeFakeSlackApi());

/** A person's message in a channel, as Slack's `message.channels` event has it. */
const channelMessage = (ts: string, text: string) =>
  messageEvent(
    {
      chatType: "group",
      chatId: "C123ABC456",
      peer: { id: "U123ABC456" },
      text,
      messageId: `cm-${ts}`,
    },
    ts,
  );

/** `stop()` of `plugin`, and whether it has resolved yet. */
function stopping(plugin: SlackChannel) {
  const state = { stopped: false, promise: Promise.resolve() };
  state.promise = plugin.stop().then(() => {
    state.stopped = true;
  });
  return state;
}

/** What became of a promise, without waiting for it. */
function watch<T>(promise: Promise<T>) {
  const state: { settled: boolean; error: unknown } = { settled: false, error: undefined };
  void promise.then(
    () => {
      state.settled = true;
    },
    (error: unknown) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Slack stop() during start()", () => {
  it("Socket Mode: resolves only once the WebSocket the start opened is closed", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    // A Socket Mode endpoint that accepts the WebSocket but has not said `hello` yet.
    const silent = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve) => silent.once("listening", () => resolve()));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const ws of silent.clients) ws.terminate();
          silent.close(() => resolve());
        }),
    );
    const sockets: WebSocket[] = [];
    silent.on("connection", (ws) => {
      sockets.push(ws);
      ws.on("error", () => undefined);
    });
    const { port } = silent.address() as AddressInfo;
    platform.workspace.socketUrl = () => `ws://127.0.0.1:${port}/link/?ticket=held`;

    const plugin = createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false });
    const { ctx } = recordingContext(plugin);
    const { entries, logger } = recordingLogger();
    const start = watch(plugin.start({ ...ctx, logger }));
    const socket = await until("the WebSocket to open", () => sockets[0]);
    // A frame that is not Slack's protocol: once the client logs it, its side is open too.
    socket.send("not json");
    await until("the client to read from the WebSocket", () =>
      entries.some((e) => e.message.includes("ignored a Socket Mode frame")),
    );
    expect(start.settled).toBe(false);

    const stop = await plugin.stop().then(() => ({
      startSettled: start.settled,
      socketState: socket.readyState,
    }));
    // The start has ended (stopped) and its WebSocket is closing or closed: nothing it opened
    // outlives the stop.
    expect(stop.startSettled).toBe(true);
    expect(AbortedError.isInstance(start.error)).toBe(true);
    expect([socket.CLOSING, socket.CLOSED]).toContain(stop.socketState);
    await until("the server to see the socket closed", () => socket.readyState === socket.CLOSED);
    expect(silent.clients.size).toBe(0);
  });

  it("Events API: resolves only once the HTTP server the start opened is closed", async () => {
    const platform = new SlackHttpPlatform();
    cleanups.push(() => platform.close());
    const plugin = platform.attach(
      createSlackChannel({ ...platform.channelOptions(), botUserId: "U0BEAMBOT1" }),
    );
    const { ctx } = recordingContext(plugin);
    // The stop comes the moment the server listens, before the start has resolved.
    const createServer = http.createServer;
    let server: http.Server | undefined;
    let serverClosed = false;
    let stop:
      | Promise<{ startSettled: boolean; serverClosed: boolean; listening: boolean }>
      | undefined;
    vi.spyOn(http, "createServer").mockImplementation(((
      ...args: Parameters<typeof createServer>
    ) => {
      const created = createServer(...args);
      server = created;
      created.once("close", () => {
        serverClosed = true;
      });
      created.prependOnceListener("listening", () => {
        stop = plugin.stop().then(() => ({
          startSettled: start.settled,
          serverClosed,
          listening: created.listening,
        }));
      });
      return created;
    }) as typeof createServer);
    const start = watch(plugin.start(ctx));
    await until("the start to end", () => start.settled);
    expect(server).toBeDefined();
    expect(stop).toBeDefined();
    expect(await stop).toEqual({ startSettled: true, serverClosed: true, listening: false });
    expect(AbortedError.isInstance(start.error)).toBe(true);
    expect(plugin.url).toBeUndefined();
  });
});

describe("Slack stop() while the host takes an event", () => {
  it("Socket Mode: waits for ctx.receive, acknowledges the envelope, then closes; an event arriving meanwhile is left to Slack", async () => {
    const taken = deferred<ReceiveResult>();
    const { platform, plugin, received } = await startedSocketMode(
      { resolveUserNames: false },
      (_input, n) => (n === 1 ? taken.promise : { status: "accepted" }),
    );
    const first = eventCallback(
      channelMessage(platform.workspace.nextTs(), "taken while stopping"),
    );
    platform.server.deliver(first);
    await until("the event to reach the host", () => received.length === 1);

    const stop = stopping(plugin);
    await sleep(50);
    expect(stop.stopped).toBe(false);
    // While it stops, the connection is still open: a new event is neither taken nor acknowledged.
    const late = eventCallback(channelMessage(platform.workspace.nextTs(), "came while stopping"));
    platform.server.deliver(late);
    await sleep(50);
    expect(received).toHaveLength(1);
    taken.resolve({ status: "accepted" });
    await stop.promise;

    expect(platform.server.isAcked(first.event_id)).toBe(true);
    expect(platform.server.isAcked(late.event_id)).toBe(false);
    await until("the connection to close", () => !platform.server.connected);
    // Slack delivers the late one again on the next connection; the first one not again.
    await plugin.start(recordingContext(plugin).ctx);
    await until("the late event to be acknowledged", () => platform.server.isAcked(late.event_id));
    const texts = platform.server.frames
      .filter((f) => f.type === "events_api")
      .map((f) => (f.payload as { event: { text: string } }).event.text);
    expect(texts.filter((t) => t === "taken while stopping")).toHaveLength(1);
  });

  it("Socket Mode: gives a host that does not answer 5 s, then closes, leaving the envelope to Slack", async () => {
    const { platform, plugin, received } = await startedSocketMode(
      { resolveUserNames: false },
      () => new Promise<ReceiveResult>(() => {}),
    );
    const payload = eventCallback(channelMessage(platform.workspace.nextTs(), "never answered"));
    platform.server.deliver(payload);
    await until("the event to reach the host", () => received.length === 1);
    const started = Date.now();
    const stop = stopping(plugin);
    await sleep(1_000);
    expect(stop.stopped).toBe(false);
    await stop.promise;
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(8_000);
    expect(platform.server.isAcked(payload.event_id)).toBe(false);
    await until("the connection to close", () => !platform.server.connected);
  }, 15_000);

  it("Events API: answers the request under way with 200 once ctx.receive resolved, then closes", async () => {
    const taken = deferred<ReceiveResult>();
    const { platform, plugin, received } = await startedHttp(
      { resolveUserNames: false },
      () => taken.promise,
    );
    const url = plugin.url!;
    const answer = platform.send(
      eventCallback(channelMessage(platform.workspace.nextTs(), "taken while stopping")),
    );
    await until("the event to reach the host", () => received.length === 1);
    const stop = stopping(plugin);
    await sleep(50);
    expect(stop.stopped).toBe(false);
    taken.resolve({ status: "accepted" });
    // Slack gets its 200: the event is acknowledged, not retried.
    expect((await answer).status).toBe(200);
    await stop.promise;
    // Nothing listens there any more.
    await expect(
      new Promise((resolve, reject) => {
        const req = http.request(url, { method: "POST", agent: false }, resolve);
        req.on("error", reject);
        req.end("{}");
      }),
    ).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
