/**
 * The dashboard follows the selected session (`sessions.messages.subscribe`), driven in a real
 * headless Chromium against a real gateway on 127.0.0.1: a message someone else adds to the
 * session (a channel's user, through the runtime; another client, through `chat.send`) shows
 * as it arrives, once, above the answer streaming to it; the tab's own message shows once; a
 * session switched away from is no longer followed, the selected one is again after a
 * reconnect; an earlier page around a search hit holds new messages back until "Back to latest
 * messages"; a message both a history load and the feed bring shows once, one the history
 * missed stays; an answer that starts streaming while a history read is on its way, that
 * streams when the end of the run before it reloads the history, or that streams across a
 * reconnect, stays and goes on in its bubble; markup in a message stays text. Where the order
 * of frames matters, the test holds them back between the page and the gateway
 * (`page.routeWebSocket`).
 */
import type { Browser, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
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
} from "./support.js";

useSchemaCheck();

let stack: Stack;
let browser: Browser;
const pages: PageRecord[] = [];

beforeAll(async () => {
  stack = await startStack();
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await closeClients();
  await stopStacks();
}, 30_000);

/** What went over the page's gateway socket: the requests it sent, the answers and events it got. */
interface SocketLog {
  requests: Array<{ id: string; method: string; params: Wire }>;
  /** Ids of the requests answered with `ok: true`. */
  answered: Set<string>;
  events: Array<{ event: string; payload: Wire }>;
}

/** A logged-in dashboard in a fresh context, with a log of its gateway socket. */
async function openDashboard(): Promise<PageRecord & { socket: SocketLog }> {
  const record = await openPage(browser);
  pages.push(record);
  const socket: SocketLog = { requests: [], answered: new Set(), events: [] };
  record.page.on("websocket", (ws) => {
    ws.on("framesent", ({ payload }) => {
      const frame = JSON.parse(String(payload)) as Wire;
      if (frame.type === "req") socket.requests.push(frame);
    });
    ws.on("framereceived", ({ payload }) => {
      const frame = JSON.parse(String(payload)) as Wire;
      if (frame.type === "res" && frame.ok === true) socket.answered.add(frame.id);
      if (frame.type === "event")
        socket.events.push({ event: frame.event, payload: frame.payload });
    });
  });
  await record.page.goto(`http://127.0.0.1:${stack.port}/`);
  await record.page.getByLabel("Gateway token").fill(TOKEN);
  await record.page.getByRole("button", { name: "Connect" }).click();
  await record.page.locator('#connection[data-state="connected"]').waitFor();
  return { ...record, socket };
}

/** Frames the page and the gateway exchanged that a test holds back, and their release. */
interface HeldFrames {
  toServer: string[];
  toPage: string[];
  releaseToServer(): void;
  releaseToPage(): void;
  /** Closes the page's socket, as a dropped connection does. */
  dropConnection(): void;
}

/**
 * A logged-in dashboard whose socket passes through Playwright: a frame from the page for
 * which `toServer` says true, and one from the gateway for which `toPage` does, is held
 * (in order) until released; everything else passes at once (through `rewriteToPage`, when
 * given, on its way to the page).
 */
async function openHeldDashboard(hold: {
  toServer: (frame: Wire) => boolean;
  toPage: (frame: Wire) => boolean;
  rewriteToPage?: (frame: Wire) => Wire;
}): Promise<PageRecord & { held: HeldFrames }> {
  const record = await openPage(browser);
  pages.push(record);
  const held: HeldFrames = {
    toServer: [],
    toPage: [],
    releaseToServer: () => undefined,
    releaseToPage: () => undefined,
    dropConnection: () => undefined,
  };
  await record.page.routeWebSocket(/^ws:/, (ws) => {
    const server = ws.connectToServer();
    let holdingToServer = true;
    let holdingToPage = true;
    held.releaseToServer = () => {
      holdingToServer = false;
      for (const frame of held.toServer.splice(0)) server.send(frame);
    };
    held.releaseToPage = () => {
      holdingToPage = false;
      for (const frame of held.toPage.splice(0)) ws.send(frame);
    };
    held.dropConnection = () => void ws.close({ code: 4000, reason: "dropped by the test" });
    ws.onMessage((message) => {
      const frame = String(message);
      if (holdingToServer && hold.toServer(JSON.parse(frame))) held.toServer.push(frame);
      else server.send(frame);
    });
    server.onMessage((message) => {
      let frame = String(message);
      if (hold.rewriteToPage !== undefined) {
        frame = JSON.stringify(hold.rewriteToPage(JSON.parse(frame)));
      }
      if (holdingToPage && hold.toPage(JSON.parse(frame))) held.toPage.push(frame);
      else ws.send(frame);
    });
  });
  await record.page.goto(`http://127.0.0.1:${stack.port}/`);
  await record.page.getByLabel("Gateway token").fill(TOKEN);
  await record.page.getByRole("button", { name: "Connect" }).click();
  await record.page.locator('#connection[data-state="connected"]').waitFor();
  return { ...record, held };
}

/** The sessions the page follows: subscribed (and answered), not unsubscribed since. */
function followed(socket: SocketLog): string[] {
  const keys = new Set<string>();
  for (const request of socket.requests) {
    if (request.method === "sessions.messages.subscribe" && socket.answered.has(request.id)) {
      keys.add(request.params.key);
    }
    if (request.method === "sessions.messages.unsubscribe") keys.delete(request.params.key);
  }
  return [...keys];
}

/** The `session.message` events the page was sent for `key` with a user message `text`. */
function userMessagesSent(socket: SocketLog, key: string, text: string): Wire[] {
  return socket.events
    .filter(
      (e) =>
        e.event === "session.message" &&
        e.payload.sessionKey === key &&
        e.payload.message.role === "user" &&
        e.payload.message.content[0]?.text === text,
    )
    .map((e) => e.payload);
}

/** Opens `key` in the dashboard and waits until the page follows it (and only it). */
async function selectSession(page: Page, socket: SocketLog, key: string): Promise<void> {
  await page.getByLabel("New session key").fill(key);
  await page.getByRole("button", { name: "Open" }).click();
  await expect.poll(() => followed(socket)).toEqual([key]);
}

/** The chat log as `role: text` lines, top to bottom. */
function chatLines(page: Page): Promise<string[]> {
  return page.evaluate(`[...document.querySelectorAll("#chat-log article")].map(
    (el) => el.dataset.role + ": " + el.querySelector(".bubble-body").textContent,
  )`);
}

/** A scripted answer: `first`, then (once `hold` settles) `rest`. */
function heldAnswer(first: string, rest: string, hold: Promise<void>) {
  return {
    events: [
      { type: "response-start" as const, model: "m1" },
      { type: "text-delta" as const, text: first },
      { type: "wait" as const, until: hold },
      { type: "text-delta" as const, text: rest },
      { type: "finish" as const, reason: "stop" as const },
    ],
  };
}

describe("dashboard following a session in a real Chromium", () => {
  it("shows a channel user's message as it arrives, once, above the answer streaming to it", async () => {
    const { page, socket, errors } = await openDashboard();
    const key = "agent:main:telegram:direct:ada";
    await selectSession(page, socket, key);
    const log = page.getByRole("log", { name: "Conversation" });

    // As a channel does: straight into the runtime, not through the gateway's methods.
    const hold = deferred();
    stack.provider.push(heldAnswer("Hello ", "Ada!", hold.promise));
    const run = await stack.runtime.session(key).send("hi, it's Ada");

    // The question is on screen while its answer is still streaming, and above it.
    const answer = log.locator('article[data-role="assistant"]');
    await answer.locator(".bubble-body", { hasText: "Hello" }).waitFor();
    await log.locator('article[data-role="user"]', { hasText: "hi, it's Ada" }).waitFor();
    expect(await answer.getAttribute("data-state")).toBe("streaming");
    expect(await chatLines(page)).toEqual(["user: hi, it's Ada", "assistant: Hello "]);

    hold.resolve();
    await run.result;
    await log.getByText("Hello Ada!", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual(["user: hi, it's Ada", "assistant: Hello Ada!"]);
    // Every message the gateway sent for the session has come, and the run's end reloaded
    // the history as stored: still one of each.
    await expect
      .poll(
        () =>
          socket.events.filter((e) => e.event === "session.message" && e.payload.sessionKey === key)
            .length,
      )
      .toBe(2);
    await log.locator('article[data-role="user"][data-state="history"]').waitFor();
    expect(await chatLines(page)).toEqual(["user: hi, it's Ada", "assistant: Hello Ada!"]);
    expect(errors).toEqual([]);
  });

  it("shows another client's chat.send message once above its answer, and this tab's own message once", async () => {
    const { page, socket, errors } = await openDashboard();
    const key = "agent:main:shared";
    await selectSession(page, socket, key);
    const log = page.getByRole("log", { name: "Conversation" });

    const other = await TestClient.connect(stack.url, { token: TOKEN });
    stack.provider.push("Answer to the other tab.");
    await other.request("chat.send", {
      sessionKey: key,
      message: "From the other tab",
      idempotencyKey: "other-tab-1",
    });
    await other.waitEvent("chat", (p) => p.runId === "other-tab-1" && p.state === "final");
    await log.getByText("Answer to the other tab.", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual([
      "user: From the other tab",
      "assistant: Answer to the other tab.",
    ]);
    // The end of a run this tab did not start reloads the history as stored; still once.
    await log.locator('article[data-role="user"][data-state="history"]').waitFor();
    expect(await chatLines(page)).toEqual([
      "user: From the other tab",
      "assistant: Answer to the other tab.",
    ]);
    await other.close();

    // This tab's own message: drawn when sent, and not again when the gateway reports it.
    stack.provider.push("Answer to this tab.");
    await page.getByLabel("Message").fill("From this tab");
    await page.getByRole("button", { name: "Send" }).click();
    await log.locator(".bubble-body", { hasText: "Answer to this tab." }).waitFor();
    const sent = socket.requests.find(
      (r) => r.method === "chat.send" && r.params.message === "From this tab",
    );
    await expect.poll(() => userMessagesSent(socket, key, "From this tab").length).toBe(1);
    const [reported] = userMessagesSent(socket, key, "From this tab");
    expect(reported.clientRunId).toBe(sent?.params.idempotencyKey);
    await log
      .locator('article[data-role="assistant"][data-state="final"]', {
        hasText: "Answer to this tab.",
      })
      .waitFor();
    expect(await chatLines(page)).toEqual([
      "user: From the other tab",
      "assistant: Answer to the other tab.",
      "user: From this tab",
      "assistant: Answer to this tab.",
    ]);
    // The bubble drawn when it was sent now carries the stored message's id.
    expect(
      await log
        .locator('article[data-role="user"]', { hasText: "From this tab" })
        .getAttribute("data-message-id"),
    ).toBe(reported.messageId);
    expect(errors).toEqual([]);
  });

  it("stops following the session it switched away from", async () => {
    const { page, socket, errors } = await openDashboard();
    const before = "agent:main:before";
    const after = "agent:main:after";
    await selectSession(page, socket, before);
    await selectSession(page, socket, after);
    const log = page.getByRole("log", { name: "Conversation" });

    stack.provider.push("Said in the old one.", "Said in the new one.");
    await (await stack.runtime.session(before).send("Unheard in the old session")).result;
    // Sent after the old session's turn ended: once it shows, the old one's would have come.
    await (await stack.runtime.session(after).send("Heard in the new session")).result;
    await log
      .locator('article[data-role="user"]', { hasText: "Heard in the new session" })
      .waitFor();
    await log.getByText("Said in the new one.", { exact: true }).waitFor();

    expect(userMessagesSent(socket, before, "Unheard in the old session")).toEqual([]);
    expect(
      socket.events.filter((e) => e.event === "session.message" && e.payload.sessionKey === before),
    ).toEqual([]);
    expect(await chatLines(page)).toEqual([
      "user: Heard in the new session",
      "assistant: Said in the new one.",
    ]);
    expect(errors).toEqual([]);
  });

  it("holds new messages back while the log shows the page around a search hit, and shows them once on Back to latest messages", async () => {
    const key = "agent:main:around";
    stack.provider.push("Noted the quokka.");
    await (await stack.runtime.session(key).send("Remember the quokka")).result;
    const { page, socket, errors } = await openDashboard();
    await selectSession(page, socket, key);
    const log = page.getByRole("log", { name: "Conversation" });
    await log.getByText("Noted the quokka.", { exact: true }).waitFor();

    const box = page.getByRole("searchbox", { name: "Search conversations" });
    await box.fill("quokka");
    await box.press("Enter");
    const hit = page
      .getByRole("list", { name: "Search results" })
      .getByRole("listitem")
      .filter({ has: page.locator('.search-role[data-role="user"]') });
    await hit.getByRole("button").click();
    await log.locator("article.bubble-found").waitFor();

    stack.provider.push("Welcome back.");
    await (await stack.runtime.session(key).send("Sent while you were searching")).result;
    await expect
      .poll(() => userMessagesSent(socket, key, "Sent while you were searching").length)
      .toBe(1);
    expect(await log.getByText("Sent while you were searching").count()).toBe(0);
    expect(await log.getByText("Welcome back.").count()).toBe(0);

    await page.getByRole("button", { name: "Back to latest messages" }).click();
    await log.getByText("Welcome back.", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Remember the quokka",
      "assistant: Noted the quokka.",
      "user: Sent while you were searching",
      "assistant: Welcome back.",
    ]);
    expect(errors).toEqual([]);
  });

  it("shows a message once that both a history load and the live feed bring", async () => {
    const key = "agent:main:twice";
    // The history is read after the message was saved, and the event reaches the page after
    // the history: hold the page's history request and the gateway's events for the session.
    const { page, errors, held } = await openHeldDashboard({
      toServer: (frame) => frame.method === "chat.history" && frame.params.sessionKey === key,
      toPage: (frame) => frame.event === "session.message" && frame.payload.sessionKey === key,
    });
    await page.getByLabel("New session key").fill(key);
    await page.getByRole("button", { name: "Open" }).click();
    // Following first, then the history: its request waits here.
    await expect.poll(() => held.toServer.length).toBe(1);
    stack.provider.push("Said once.");
    await (await stack.runtime.session(key).send("Brought twice")).result;
    await expect.poll(() => held.toPage.length).toBe(2);

    held.releaseToServer();
    const log = page.getByRole("log", { name: "Conversation" });
    await log.locator('article[data-role="user"][data-state="history"]').waitFor();
    expect(await chatLines(page)).toEqual(["user: Brought twice", "assistant: Said once."]);

    // The feed's copy arrives now, after the history: it is on screen already.
    held.releaseToPage();
    // A later message shows after the released ones were handled (frames arrive in order).
    stack.provider.push("Said after.");
    await (await stack.runtime.session(key).send("After the history")).result;
    await log.getByText("Said after.", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Brought twice",
      "assistant: Said once.",
      "user: After the history",
      "assistant: Said after.",
    ]);
    expect(errors).toEqual([]);
  });

  it("keeps a message that arrived while a history read before it was on its way", async () => {
    const key = "agent:main:meanwhile";
    stack.provider.push("Stored before.");
    await (await stack.runtime.session(key).send("Asked before")).result;
    // The history is read before the message is saved, and reaches the page after its event.
    const historyIds = new Set<string>();
    const { page, errors, held } = await openHeldDashboard({
      toServer: (frame) => {
        if (frame.method === "chat.history" && frame.params.sessionKey === key) {
          historyIds.add(frame.id);
        }
        return false;
      },
      toPage: (frame) => frame.type === "res" && historyIds.has(frame.id),
    });
    await page.getByLabel("New session key").fill(key);
    await page.getByRole("button", { name: "Open" }).click();
    await expect.poll(() => held.toPage.length).toBe(1);
    const hold = deferred();
    const more = deferred();
    stack.provider.push({
      events: [
        { type: "response-start" as const, model: "m1" },
        { type: "text-delta" as const, text: "Answering" },
        { type: "wait" as const, until: hold.promise },
        { type: "text-delta" as const, text: " meanwhile" },
        { type: "wait" as const, until: more.promise },
        { type: "text-delta" as const, text: "." },
        { type: "finish" as const, reason: "stop" as const },
      ],
    });
    const run = await stack.runtime.session(key).send("Asked meanwhile");
    const log = page.getByRole("log", { name: "Conversation" });
    await log.locator(".bubble-body", { hasText: "Answering" }).waitFor();
    expect(await chatLines(page)).toEqual(["user: Asked meanwhile", "assistant: Answering"]);

    held.releaseToPage();
    await log.getByText("Stored before.", { exact: true }).waitFor();
    // The history did not have the new question: it stays, after the stored ones, and so
    // does the answer streaming to it, which goes on in the same bubble.
    expect(await chatLines(page)).toEqual([
      "user: Asked before",
      "assistant: Stored before.",
      "user: Asked meanwhile",
      "assistant: Answering",
    ]);
    const streaming = log.locator('article[data-role="assistant"][data-state="streaming"]');
    expect(await streaming.count()).toBe(1);

    hold.resolve();
    await streaming.filter({ hasText: "Answering meanwhile" }).waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Asked before",
      "assistant: Stored before.",
      "user: Asked meanwhile",
      "assistant: Answering meanwhile",
    ]);

    more.resolve();
    await run.result;
    await log
      .locator('article[data-role="assistant"][data-state="history"]', {
        hasText: "Answering meanwhile.",
      })
      .waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Asked before",
      "assistant: Stored before.",
      "user: Asked meanwhile",
      "assistant: Answering meanwhile.",
    ]);
    expect(errors).toEqual([]);
  });

  it("keeps an answer streaming when the end of the run before it reloads the history", async () => {
    const { page, socket, errors } = await openDashboard();
    const key = "agent:main:back-to-back";
    await selectSession(page, socket, key);
    const log = page.getByRole("log", { name: "Conversation" });
    const holdFirst = deferred();
    const holdSecond = deferred();
    stack.provider.push(heldAnswer("First ", "answer.", holdFirst.promise));
    stack.provider.push(heldAnswer("Second ", "answer.", holdSecond.promise));
    const first = await stack.runtime.session(key).send("Question one");
    const second = await stack.runtime.session(key).send("Question two", { queueMode: "followup" });
    await log.locator(".bubble-body", { hasText: "First" }).waitFor();

    // The second run streams as soon as the first ends; the first's end (a run this tab did
    // not start) reloads the history a moment later, which keeps the second's answer.
    holdFirst.resolve();
    await first.result;
    const streaming = log.locator('article[data-role="assistant"][data-state="streaming"]');
    await streaming.filter({ hasText: "Second" }).waitFor();
    await log
      .locator('article[data-role="assistant"][data-state="history"]', { hasText: "First answer." })
      .waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Question one",
      "assistant: First answer.",
      "user: Question two",
      "assistant: Second ",
    ]);

    holdSecond.resolve();
    await second.result;
    await log.getByText("Second answer.", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Question one",
      "assistant: First answer.",
      "user: Question two",
      "assistant: Second answer.",
    ]);
    expect(errors).toEqual([]);
  });

  it("follows the session again when the connection comes back", async () => {
    const key = "agent:main:reconnect";
    // Each subscribe the page sends for the session, and which of them the gateway answered.
    const subscribes: string[] = [];
    const answered = new Set<string>();
    const { page, errors, held } = await openHeldDashboard({
      toServer: (frame) => {
        if (frame.method === "sessions.messages.subscribe" && frame.params.key === key) {
          subscribes.push(frame.id);
        }
        return false;
      },
      toPage: (frame) => {
        if (frame.type === "res" && frame.ok === true && subscribes.includes(frame.id)) {
          answered.add(frame.id);
        }
        return false;
      },
    });
    await page.getByLabel("New session key").fill(key);
    await page.getByRole("button", { name: "Open" }).click();
    await expect.poll(() => answered.size).toBe(1);

    held.dropConnection();
    await page.locator('#connection[data-state="reconnecting"]').waitFor();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await expect.poll(() => answered.size).toBe(2);
    expect(await page.locator("#chat-session").textContent()).toBe(key);

    const hold = deferred();
    stack.provider.push(heldAnswer("Welcome ", "back.", hold.promise));
    const run = await stack.runtime.session(key).send("Sent after the reconnect");
    const log = page.getByRole("log", { name: "Conversation" });
    await log.locator(".bubble-body", { hasText: "Welcome" }).waitFor();
    await log
      .locator('article[data-role="user"]', { hasText: "Sent after the reconnect" })
      .waitFor();
    expect(await chatLines(page)).toEqual([
      "user: Sent after the reconnect",
      "assistant: Welcome ",
    ]);
    hold.resolve();
    await run.result;
    await log.getByText("Welcome back.", { exact: true }).waitFor();
    expect(errors).toEqual([]);
  });

  describe("an answer streaming when the connection drops", () => {
    let key = "";
    /** "Part one"; on `first` ", part two"; on `second` ", part three"; on `third` "." and the end. */
    function inParts(first: Promise<void>, second: Promise<void>, third: Promise<void>) {
      return {
        events: [
          { type: "response-start" as const, model: "m1" },
          { type: "text-delta" as const, text: "Part one" },
          { type: "wait" as const, until: first },
          { type: "text-delta" as const, text: ", part two" },
          { type: "wait" as const, until: second },
          { type: "text-delta" as const, text: ", part three" },
          { type: "wait" as const, until: third },
          { type: "text-delta" as const, text: "." },
          { type: "finish" as const, reason: "stop" as const },
        ],
      };
    }
    const whole = "Part one, part two, part three.";
    /** The `chat` delta frames the gateway sent the page for the session. */
    const isDelta = (frame: Wire, text: string) =>
      frame.type === "event" &&
      frame.event === "chat" &&
      frame.payload.sessionKey === key &&
      frame.payload.deltaText === text;

    /** A dashboard showing `key` (its first history read done), and a run streaming "Part one". */
    async function streamingWhenDropped(
      name: string,
      hold: {
        toServer?: (frame: Wire) => boolean;
        toPage?: (frame: Wire) => boolean;
        rewriteToPage?: (frame: Wire) => Wire;
      },
    ) {
      key = `agent:main:${name}`;
      const historyIds = new Set<string>();
      const historiesRead = new Set<string>();
      const dashboard = await openHeldDashboard({
        toServer: (frame) => {
          if (frame.method === "chat.history" && frame.params.sessionKey === key) {
            historyIds.add(frame.id);
          }
          return hold.toServer?.(frame) ?? false;
        },
        toPage: (frame) => {
          if (frame.type === "res" && historyIds.has(frame.id)) historiesRead.add(frame.id);
          return hold.toPage?.(frame) ?? false;
        },
        ...(hold.rewriteToPage === undefined ? {} : { rewriteToPage: hold.rewriteToPage }),
      });
      const { page } = dashboard;
      await page.getByLabel("New session key").fill(key);
      await page.getByRole("button", { name: "Open" }).click();
      await expect.poll(() => historiesRead.size).toBe(1);
      const first = deferred();
      const second = deferred();
      const third = deferred();
      stack.provider.push(inParts(first.promise, second.promise, third.promise));
      const run = await stack.runtime.session(key).send("Asked across");
      const log = page.getByRole("log", { name: "Conversation" });
      await log.locator(".bubble-body", { hasText: "Part one" }).waitFor();
      return { ...dashboard, log, run, first, second, third, historiesRead };
    }

    /**
     * {@link streamingWhenDropped} whose connection drops and whose reconnect (the page's
     * second handshake) is held until its run has ended: release it with `releaseToServer`.
     */
    async function runEndsWhileDropped(name: string) {
      let connects = 0;
      const dashboard = await streamingWhenDropped(name, {
        toServer: (frame) => frame.method === "connect" && ++connects === 2,
      });
      const { page, held, first, second, third, run } = dashboard;
      held.dropConnection();
      await page.locator('#connection[data-state="reconnecting"]').waitFor();
      await expect.poll(() => held.toServer.length).toBe(1);
      first.resolve();
      second.resolve();
      third.resolve();
      return { ...dashboard, result: await run.result };
    }

    /** Once reconnected: the answer is the whole one, shown from the stored history. */
    async function shownFromHistory(page: Page, log: Locator, errors: string[]) {
      await page.locator('#connection[data-state="connected"]').waitFor();
      await log
        .locator('article[data-role="assistant"][data-state="history"]', { hasText: whole })
        .waitFor();
      expect(await chatLines(page)).toEqual(["user: Asked across", `assistant: ${whole}`]);
      expect(errors).toEqual([]);
    }

    /** The answer's bubble, and the note under it. */
    const answerOf = (page: Page) => page.locator('#chat-log article[data-role="assistant"]');

    it("goes on in the same bubble when its run still streams and nothing was missed", async () => {
      const { page, errors, held, log, run, first, second, third, historiesRead } =
        await streamingWhenDropped("dropped-nothing-missed", {});
      held.dropConnection();
      await page.locator('#connection[data-state="reconnecting"]').waitFor();
      await page.locator('#connection[data-state="connected"]').waitFor();
      // The history read on reconnecting has the question; the answer stays, marked.
      await expect.poll(() => historiesRead.size).toBe(2);
      expect(await chatLines(page)).toEqual(["user: Asked across", "assistant: Part one"]);
      const answer = answerOf(page);
      expect(await answer.getAttribute("data-state")).toBe("streaming");
      expect(await answer.locator(".bubble-note").textContent()).toBe(
        "Connection lost; catching up…",
      );

      first.resolve();
      await answer.locator(".bubble-body", { hasText: "Part one, part two" }).waitFor();
      expect(await chatLines(page)).toEqual([
        "user: Asked across",
        "assistant: Part one, part two",
      ]);
      expect(await answer.locator(".bubble-note").isHidden()).toBe(true);

      second.resolve();
      third.resolve();
      await run.result;
      await log.getByText(whole, { exact: true }).waitFor();
      expect(await chatLines(page)).toEqual(["user: Asked across", `assistant: ${whole}`]);
      expect(errors).toEqual([]);
    });

    it("says part of it was missed, then shows it whole when its run ends", async () => {
      let dropped = false;
      // The delta sent while the connection is going down never reaches the page.
      const { page, errors, held, log, run, first, second, third } = await streamingWhenDropped(
        "dropped-part-missed",
        { toPage: (frame) => isDelta(frame, ", part two") && !dropped },
      );
      first.resolve();
      await expect.poll(() => held.toPage.length).toBe(1);
      dropped = true;
      held.dropConnection();
      await page.locator('#connection[data-state="reconnecting"]').waitFor();
      await page.locator('#connection[data-state="connected"]').waitFor();

      // The next delta after the gap: what was missed is marked, not made up.
      second.resolve();
      const answer = answerOf(page);
      await answer.locator(".bubble-body", { hasText: "part three" }).waitFor();
      expect(await chatLines(page)).toEqual([
        "user: Asked across",
        "assistant: Part one … , part three",
      ]);
      expect(await answer.locator(".bubble-note").textContent()).toBe(
        "Part of this answer was missed while the connection was down; it shows whole when it ends.",
      );

      third.resolve();
      await run.result;
      await log.getByText(whole, { exact: true }).waitFor();
      expect(await chatLines(page)).toEqual(["user: Asked across", `assistant: ${whole}`]);
      expect(await answer.locator(".bubble-note").isHidden()).toBe(true);
      expect(errors).toEqual([]);
    });

    it("ends it and shows the history when its run ended while the connection was down", async () => {
      const { page, errors, held, log } = await runEndsWhileDropped("dropped-run-ended");
      held.releaseToServer();
      await shownFromHistory(page, log, errors);
    });

    it("ends it when its run ended while the connection was down, also once a busy gateway has forgotten that run", async () => {
      const { page, errors, held, log, result } =
        await runEndsWhileDropped("dropped-run-forgotten");
      const { runId } = result;
      // The pages of earlier tests would each follow the flood of runs below: closed.
      for (const record of pages.splice(0)) {
        if (record.page === page) pages.push(record);
        else await record.context.close();
      }
      // More runs end meanwhile than the gateway keeps the outcome of (1,000 runs, as 2,000
      // ids): `agent.wait` no longer knows this run and answers as for one still going.
      const others = 2_001;
      stack.provider.push(...Array.from({ length: others }, () => "Busy."));
      for (let i = 0; i < others; i++) {
        await (await stack.runtime.session(`agent:main:busy-${i % 10}`).send("Busy?")).result;
      }
      const probe = await TestClient.connect(stack.url, { token: TOKEN });
      expect(await probe.request("agent.wait", { runId, timeoutMs: 0 })).toMatchObject({
        status: "timeout",
      });
      held.releaseToServer();
      await shownFromHistory(page, log, errors);
      // Its 2,001 runs take some 6 s alone, and several times that on a loaded CI machine:
      // more than the default 20 s.
    }, 90_000);

    it("ends it when the gateway that answers the reconnect is another process", async () => {
      let hellos = 0;
      // The second hello says the gateway started a moment ago (it restarted, or another one
      // behind the same address answered): the run it was following is not there.
      const { page, errors, held, log, run, first, second, third } = await streamingWhenDropped(
        "dropped-gateway-restarted",
        {
          rewriteToPage: (frame) =>
            frame.type === "res" && frame.payload?.type === "hello-ok" && ++hellos === 2
              ? {
                  ...frame,
                  payload: {
                    ...frame.payload,
                    snapshot: { ...frame.payload.snapshot, uptimeMs: 5 },
                  },
                }
              : frame,
        },
      );
      held.dropConnection();
      await page.locator('#connection[data-state="reconnecting"]').waitFor();
      await page.locator('#connection[data-state="connected"]').waitFor();
      expect(hellos).toBe(2);
      const answer = answerOf(page);
      // Not asked after (agent.wait, sessions.describe): the history as stored replaces it.
      await expect.poll(() => chatLines(page)).toEqual(["user: Asked across"]);
      expect(await answer.count()).toBe(0);

      first.resolve();
      second.resolve();
      third.resolve();
      await run.result;
      await log.getByText(whole, { exact: true }).waitFor();
      expect(errors).toEqual([]);
    });
  });

  it("shows markup in a message from elsewhere as text", async () => {
    const { page, socket, errors, requests } = await openDashboard();
    const key = "agent:main:markup";
    await selectSession(page, socket, key);
    const log = page.getByRole("log", { name: "Conversation" });
    const markup = `Look <img src=x onerror="document.title='pwned'"> at <b>this</b>`;

    stack.provider.push("Looked.");
    await (await stack.runtime.session(key).send(markup)).result;
    const question = log.locator('article[data-role="user"]');
    await question.waitFor();
    expect(await question.locator(".bubble-body").textContent()).toBe(markup);
    expect(await page.locator("#chat-log img, #chat-log b, #chat-log [onerror]").count()).toBe(0);
    await log.getByText("Looked.", { exact: true }).waitFor();
    expect(await chatLines(page)).toEqual([`user: ${markup}`, "assistant: Looked."]);

    // Nothing was loaded from it and nothing ran.
    expect(requests.filter((url) => new URL(url).pathname === "/x")).toEqual([]);
    expect(await page.title()).toBe("BeamClaw dashboard");
    expect(errors).toEqual([]);
  });
});
