/**
 * The production build (`next start`; the package's `test` script builds it just before) with
 * the scripted model, driven over HTTP from Node and in real headless Chromium.
 */
import { fileURLToPath } from "node:url";
import type { RunEvent } from "@beamclaw/core";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { readServerSentEvents } from "../lib/sse";
import { launchChromium } from "./support/chromium";
import { health, type NextServer, startNext, waitFor } from "./support/next-server";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));

let server: NextServer;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([
    startNext({
      command: "start",
      cwd: APP_DIR,
      env: { BEAMCLAW_SCRIPTED: "1" },
      readyTimeoutMs: 30_000,
    }),
    launchChromium(),
  ]);
});

afterAll(async () => {
  await Promise.all([browser?.close(), server?.stop()]);
});

function postJson(path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

describe("the route handlers, over HTTP", () => {
  it("POST /api/chat streams one data: line of JSON (and its id) per run event, from run-start to run-end, and an approval posted to /api/approvals resumes the run", async () => {
    const response = await postJson("/api/chat", {
      sessionKey: "agent:main:direct:http-stream",
      text: "water the plants",
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-cache, no-transform");
    const [forEvents, forText] = response.body!.tee();
    const rawText = new Response(forText).text();

    const events: RunEvent[] = [];
    for await (const event of readServerSentEvents<RunEvent>(forEvents)) {
      events.push(event);
      if (event.type === "tool-approval-request") {
        const answer = await postJson("/api/approvals", {
          requestId: event.requestId,
          decision: "allow-once",
        });
        expect(answer.status).toBe(200);
        expect(await answer.json()).toEqual({ answered: true });
      }
    }

    const blocks = (await rawText).split("\n\n").filter((block) => block !== "");
    expect(blocks).toHaveLength(events.length);
    // Each event: its id (its index in the run) and one data line of JSON.
    for (const [i, block] of blocks.entries()) {
      expect(block).toMatch(new RegExp(`^id: ${i}\ndata: \\{.*\\}$`));
    }
    expect(events[0]?.type).toBe("run-start");
    expect(events.at(-1)?.type).toBe("run-end");
    expect(events.map((e) => e.type)).toEqual(
      expect.arrayContaining(["tool-call", "tool-approval-request", "tool-result", "text-delta"]),
    );
    const end = events.at(-1);
    expect(end?.type === "run-end" && end.result).toMatchObject({
      status: "completed",
      text: expect.stringMatching(/^Saved note #\d+: "water the plants"\.$/),
    });
  });

  it("every request of one server process is served by the same runtime", async () => {
    const first = await health(server);
    const chat = await postJson("/api/chat", {
      sessionKey: "agent:main:direct:http-same-runtime",
      text: "one more",
    });
    // The session lives in the runtime the health route reports on.
    for await (const event of readServerSentEvents<RunEvent>(chat.body!)) {
      if (event.type === "tool-approval-request") {
        const during = await health(server);
        expect(during.pendingApprovals).toBe(1);
        expect(during.runtimeId).toBe(first.runtimeId);
        await postJson("/api/approvals", { requestId: event.requestId, decision: "deny" });
      }
    }
    const second = await health(server);
    expect(second.runtimeId).toBe(first.runtimeId);
    expect(second.pid).toBe(first.pid);
    expect(second.runtimesCreated).toBe(1);
    expect(second.activeSessions).toBeGreaterThanOrEqual(first.activeSessions + 1);
  });

  it("a client that disconnects aborts its run, and the approval it waited for is withdrawn", async () => {
    const controller = new AbortController();
    const response = await fetch(`${server.url}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sessionKey: "agent:main:direct:http-disconnect", text: "abandon me" }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    while (!seen.includes('"tool-approval-request"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before the approval request:\n${seen}`);
      seen += decoder.decode(value, { stream: true });
    }
    expect((await health(server)).pendingApprovals).toBe(1);
    controller.abort();
    await reader.cancel().catch(() => undefined);
    // Without the abort the request would wait 120 s for an answer.
    await waitFor(
      () => health(server),
      (h) => h.pendingApprovals === 0,
      5000,
      "the approval to go",
    );
  });

  it("a malformed session key is refused with 400 before anything runs", async () => {
    const response = await postJson("/api/chat", { sessionKey: "not a key", text: "hi" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "INVALID_SESSION_KEY" } });
  });

  it("answering an approval request that is not pending is a 404, and a bad decision a 400", async () => {
    const unknown = await postJson("/api/approvals", { requestId: "nope", decision: "deny" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ answered: false });
    const bad = await postJson("/api/approvals", { requestId: "nope", decision: "yes" });
    expect(bad.status).toBe(400);
    await bad.body?.cancel();
  });
});

describe("the page, in headless Chromium", () => {
  let context: BrowserContext;
  let page: Page;
  let pageErrors: string[];

  beforeEach(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(server.url);
    // Hydrated: the form now submits through React, not as a native form post.
    await page.locator("main[data-ready=true]").waitFor();
  });

  afterEach(async () => {
    await context.close();
    expect(pageErrors).toEqual([]);
  });

  const lastAnswer = () => page.getByTestId("answer").last();

  async function sendMessage(text: string) {
    await page.getByLabel("Message").fill(text);
    await page.getByRole("button", { name: "Send" }).click();
  }

  it("asks before the tool runs, and after Approve streams the answer in chunk by chunk", async () => {
    const note = "the demo is on Friday";
    await sendMessage(note);

    const prompt = page.getByRole("dialog", { name: "Approval needed" });
    await prompt.waitFor();
    await expect(prompt.textContent()).resolves.toContain("save_note");
    await expect(prompt.textContent()).resolves.toContain(note);
    // Nothing ran and nothing was answered while the question is open.
    expect(await lastAnswer().textContent()).toBe("");
    expect(await page.getByTestId("tool").count()).toBe(0);
    expect((await health(server)).pendingApprovals).toBe(1);

    await prompt.getByRole("button", { name: "Approve" }).click();

    // Streaming: the answer is seen while it is still a strict, non-empty prefix of itself.
    const final = new RegExp(`^Saved note #\\d+: "${note}"\\.$`);
    await page.waitForFunction(
      () => {
        const answers = document.querySelectorAll('[data-testid="answer"]');
        const answer = answers[answers.length - 1];
        const text = answer?.textContent ?? "";
        return (
          answer?.getAttribute("data-status") === "streaming" &&
          text.startsWith("Saved note #") &&
          !text.endsWith('".')
        );
      },
      undefined,
      { polling: "raf" },
    );
    await page.locator('[data-testid="answer"][data-status="completed"]').waitFor();
    expect(await lastAnswer().textContent()).toMatch(final);
    expect(await page.getByTestId("tool").allTextContents()).toEqual(["save_note: done"]);
    expect(await prompt.count()).toBe(0);
    expect(await page.locator("main").getAttribute("data-phase")).toBe("idle");
  });

  it("after Deny the tool does not run and the answer says so", async () => {
    await sendMessage("forget everything");
    const prompt = page.getByRole("dialog", { name: "Approval needed" });
    await prompt.getByRole("button", { name: "Deny" }).click();
    await page.locator('[data-testid="answer"][data-status="completed"]').waitFor();
    expect(await lastAnswer().textContent()).toBe("Okay, I did not save that note.");
    expect(await page.getByTestId("tool").allTextContents()).toEqual(["save_note: not run"]);
  });

  it("Stop disconnects the stream, which aborts the run on the server", async () => {
    await sendMessage("never mind");
    await page.getByRole("dialog", { name: "Approval needed" }).waitFor();
    expect((await health(server)).pendingApprovals).toBe(1);

    await page.getByRole("button", { name: "Stop" }).click();

    await page.locator('[data-testid="answer"][data-status="stopped"]').waitFor();
    await waitFor(
      () => health(server),
      (h) => h.pendingApprovals === 0,
      5000,
      "the approval to go",
    );
  });
});
