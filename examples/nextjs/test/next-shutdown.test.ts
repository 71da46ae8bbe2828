/**
 * `next start` told to stop (SIGTERM, as Docker or systemd do) while a run waits for a person:
 * `lib/runtime.ts` stops the runtime beside Next.js's own graceful close, so the open stream
 * ends (an `error` event: the session stopped) and the process exits at once, instead of
 * Next.js waiting for that response until the approval times out (120 s).
 */
import { fileURLToPath } from "node:url";
import type { RunEvent } from "@beamclaw/core";
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from "vitest";
import { readServerSentEvents } from "../lib/sse";
import { launchChromium } from "./support/chromium";
import { health, type NextServer, startNext } from "./support/next-server";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));

let server: NextServer;
let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

// Each test stops its server: a fresh one each.
beforeEach(async () => {
  server = await startNext({
    command: "start",
    cwd: APP_DIR,
    env: { BEAMCLAW_SCRIPTED: "1" },
    readyTimeoutMs: 30_000,
  });
});

afterEach(async () => {
  await server?.stop();
});

/** Resolves "exited" once the server's process is gone, or "still running" after 10 s. */
async function exitWithin10s(): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      server.exited.then(() => "exited"),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still running"), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

it("SIGTERM stops the runtime: a run waiting for approval ends its stream and the server exits promptly", async () => {
  const response = await fetch(`${server.url}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sessionKey: "agent:main:direct:shutdown", text: "wait for me" }),
  });
  expect(response.status).toBe(200);
  const events: RunEvent[] = [];
  const streamEnded = (async () => {
    for await (const event of readServerSentEvents<RunEvent>(response.body!)) {
      events.push(event);
    }
  })();
  streamEnded.catch(() => undefined); // awaited below; not unhandled if the test fails first
  const waiting = await (async () => {
    for (let i = 0; i < 100; i++) {
      if (events.some((event) => event.type === "tool-approval-request")) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  })();
  expect(waiting).toBe(true);
  expect((await health(server)).pendingApprovals).toBe(1);

  process.kill(server.pid, "SIGTERM");
  expect(await exitWithin10s(), server.output()).toBe("exited");
  await streamEnded; // ended, not cut (a cut response would throw)
  // The stream was not cut: it ends with the runtime's word that the session stopped (the
  // message stays queued for a durable store's next start), and the tool never ran.
  const end = events.at(-1);
  expect(end, JSON.stringify(events)).toMatchObject({
    type: "error",
    error: { code: "NO_PROCESS", message: expect.stringContaining("shutdown") },
  });
  expect(events.some((event) => event.type === "tool-result")).toBe(false);
  expect(server.output()).not.toMatch(/stopping the BeamClaw runtime failed|Error:/);
});

it("in the page, an answer whose run the server stopped shows an error, not a stream that never ends", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(server.url);
    await page.locator("main[data-ready=true]").waitFor();
    await page.getByLabel("Message").fill("hold on");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByRole("dialog", { name: "Approval needed" }).waitFor();

    process.kill(server.pid, "SIGTERM");

    const answer = page.locator('[data-testid="answer"][data-status="error"]');
    await answer.waitFor();
    expect(await answer.textContent()).toContain("stopped (shutdown)");
    expect(await page.getByRole("dialog", { name: "Approval needed" }).count()).toBe(0);
    expect(await page.locator("main").getAttribute("data-phase")).toBe("idle");
    // Chromium's idle keep-alive connections would hold Next.js's close for its 5 s timeout.
    await context.close();
    expect(await exitWithin10s(), server.output()).toBe("exited");
  } finally {
    await context.close();
  }
});
