/**
 * The dashboard at `/`, driven in a real headless Chromium against a real gateway on
 * 127.0.0.1: log in with the token, send a message, approve the tool the model calls, watch
 * the answer stream in, and see a wrong token refused.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import {
  AGENT_EMOJI,
  AGENT_NAME,
  ANSWER,
  ANSWER_CHUNKS,
  CRON_JOB,
  type DashboardGateway,
  DEPLOY_INPUT,
  ENDLESS_START,
  REWIND_ANSWERS,
  startDashboardGateway,
  TOKEN,
} from "./browser/fixture.js";

const TOKEN_KEY = "beamclaw.gateway.token";

let gw: DashboardGateway;
let browser: Browser;
const pages: PageRecord[] = [];

beforeAll(async () => {
  gw = await startDashboardGateway();
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await gw?.stop();
}, 30_000);

/** Opens the dashboard in a fresh context; also returns the page's CSP header. */
async function open(): Promise<PageRecord & { csp: string | undefined }> {
  const record = await openPage(browser);
  pages.push(record);
  const response = await record.page.goto(`${gw.baseUrl}/`);
  return { ...record, csp: response?.headers()["content-security-policy"] };
}

async function logIn(record: PageRecord, token: string): Promise<void> {
  const { page } = record;
  await page.getByLabel("Gateway token").fill(token);
  await page.getByRole("button", { name: "Connect" }).click();
}

/** Every URL the page touched is on the gateway's own origin (no CDN, no other host). */
function expectOnlyGatewayRequests(record: PageRecord): void {
  const allowed = [gw.baseUrl, `ws://127.0.0.1:${gw.port}`];
  const foreign = record.requests.filter((url) => !allowed.some((a) => url.startsWith(a)));
  expect(foreign).toEqual([]);
  expect(record.requests.length).toBeGreaterThan(0);
}

describe("dashboard in a real Chromium", () => {
  it("refuses a wrong token with a clear error, keeps the dashboard locked and forgets the token", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, "not-the-token");

    const alert = page.getByRole("alert").filter({ hasText: "Login failed" });
    await alert.waitFor();
    expect(await alert.textContent()).toContain("token mismatch");
    expect(await page.getByRole("heading", { name: "Sessions" }).isVisible()).toBe(false);
    expect(await page.getByLabel("Gateway token").isVisible()).toBe(true);
    expect(await page.getByRole("status").first().textContent()).toContain("Not connected");
    expect(await page.evaluate(`sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})`)).toBeNull();
    expect(record.errors).toEqual([]);
    expectOnlyGatewayRequests(record);
  });

  it("logs in with the token, runs the tool only after approval, and streams the answer as it arrives", async () => {
    const record = await open();
    const { page } = record;
    // The gateway's strict CSP is in force: the page must do everything under it (any
    // violation would show up in `record.errors`, asserted empty at the end).
    expect(record.csp).toContain("script-src 'self'");
    expect(record.csp).toContain("style-src 'self'");
    await logIn(record, TOKEN);

    // Logged in: the panels show, the connection says so, the token stays in this tab only.
    await page.getByRole("heading", { name: "Sessions" }).waitFor();
    await page.locator('#connection[data-state="connected"]').waitFor();
    expect(await page.locator("#connection-text").textContent()).toBe("Connected");
    expect(await page.evaluate(`sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})`)).toBe(TOKEN);
    expect(await page.evaluate(`localStorage.length`)).toBe(0);

    // Send a message to the main session.
    expect(await page.locator("#chat-session").textContent()).toBe("agent:main:main");
    await page.getByLabel("Message").fill("Deploy the build to staging, please");
    await page.getByRole("button", { name: "Send" }).click();
    const log = page.getByRole("log", { name: "Conversation" });
    await log.getByText("Deploy the build to staging, please").waitFor();

    // The model's tool call waits for approval; the tool has not run.
    const approval = page.getByRole("listitem", { name: "Approval for deploy" });
    await approval.waitFor();
    expect(gw.deployCalls).toEqual([]);
    expect(await page.locator("#approvals-count").textContent()).toBe("1");
    const session = page.locator('#sessions-list li[data-session-key="agent:main:main"]');
    await session.locator('[data-status="awaiting approval"]').waitFor();
    // The tool's arguments are shown as text, markup and all, never as elements.
    expect(await approval.locator(".approval-input").textContent()).toContain(DEPLOY_INPUT.note);
    expect(await approval.locator(".approval-input b, .approval-input img").count()).toBe(0);

    await approval.getByRole("button", { name: "Approve once" }).click();

    // The answer streams: its first chunk is on screen while the rest is still held back.
    const answer = log.locator('article[data-role="assistant"]').last();
    await answer.locator(".bubble-body", { hasText: ANSWER_CHUNKS[0].trim() }).waitFor();
    expect(await answer.getAttribute("data-state")).toBe("streaming");
    expect(await answer.locator(".bubble-body").textContent()).toBe(ANSWER_CHUNKS[0]);
    expect(gw.deployCalls).toEqual([{ target: "staging" }]);
    await page.getByText("Nothing waiting for approval.").waitFor();
    await session.locator('[data-status="streaming"]').waitFor();

    gw.midStream.open();

    // The final answer replaces the stream; the session is idle again.
    await log.locator('article[data-role="assistant"][data-state="final"]').waitFor();
    expect(await answer.locator(".bubble-body").textContent()).toBe(ANSWER);
    // Signed with the agent's identity (agents.list), not "Assistant".
    expect(await answer.locator(".bubble-author").textContent()).toBe(
      `${AGENT_EMOJI} ${AGENT_NAME}`,
    );
    await session.locator('[data-status="idle"]').waitFor();
    expect(await page.locator("#chat-run-state").textContent()).toBe("Done.");
    const toolLine = log.locator('article[data-role="tool"]');
    expect(await toolLine.getAttribute("data-state")).toBe("done");
    expect(gw.deployCalls).toHaveLength(1);

    // Usage per provider and day counts both model calls.
    const usageRow = page.locator('#usage-body tr[data-provider="scripted"]');
    await usageRow.waitFor();
    expect(await usageRow.locator("td").nth(1).textContent()).toBe("2");

    // The session's own usage this week, from its transcript: the question, the tool call,
    // its result and the answer (loaded on Refresh: it reads transcripts); a click shows its
    // messages with what each answer cost.
    await page.locator("#usage-refresh").click();
    const sessionUsage = page.locator(
      '#usage-sessions-body tr[data-session-key="agent:main:main"]',
    );
    await sessionUsage.waitFor();
    expect(await sessionUsage.locator("td").nth(0).textContent()).toBe("4");
    expect(await sessionUsage.locator("td").nth(1).textContent()).toBe("1");
    await sessionUsage.getByRole("button", { name: "agent:main:main" }).click();
    const messages = page.getByRole("list", { name: "Cost log of agent:main:main" });
    await messages.locator('li[data-role="assistant"]').last().waitFor();
    expect(await messages.locator("li").count()).toBe(4);
    expect(await messages.locator('li[data-role="user"] .log-text').textContent()).toBe(
      "Deploy the build to staging, please",
    );
    expect(await messages.locator('li[data-role="assistant"] .log-text').last().textContent()).toBe(
      ANSWER,
    );
    expect(await messages.locator('li[data-role="assistant"] .log-cost').count()).toBe(2);

    expect(record.errors).toEqual([]);
    expectOnlyGatewayRequests(record);
  });

  it("opens a new session, and Stop aborts its streaming reply, which shows as stopped", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, TOKEN);
    await page.locator('#connection[data-state="connected"]').waitFor();

    await page.getByLabel("New session key").fill("agent:main:second");
    await page.getByRole("button", { name: "Open" }).click();
    expect(await page.locator("#chat-session").textContent()).toBe("agent:main:second");
    const stop = page.getByRole("button", { name: "Stop" });
    expect(await stop.isDisabled()).toBe(true);

    await page.getByLabel("Message").fill("Write me a very long essay");
    await page.getByRole("button", { name: "Send" }).click();
    const log = page.getByRole("log", { name: "Conversation" });
    const answer = log.locator('article[data-role="assistant"]').last();
    await answer.locator(".bubble-body", { hasText: ENDLESS_START }).waitFor();
    expect(await answer.getAttribute("data-state")).toBe("streaming");

    await stop.click();
    await log.locator('article[data-role="assistant"][data-state="aborted"]').waitFor();
    expect(await answer.locator(".bubble-body").textContent()).toBe(ENDLESS_START);
    expect(await answer.locator(".bubble-note").textContent()).toMatch(/stopped|aborted/i);
    expect(await page.locator("#chat-run-state").textContent()).toBe("Stopped.");
    const session = page.locator('#sessions-list li[data-session-key="agent:main:second"]');
    await session.locator('[data-status="aborted"]').waitFor();
    expect(await stop.isDisabled()).toBe(true);
    expect(record.errors).toEqual([]);
  });

  it("a chat command typed in the message box is answered without the model", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, TOKEN);
    await page.locator('#connection[data-state="connected"]').waitFor();
    await page.getByLabel("New session key").fill("agent:main:commands");
    await page.getByRole("button", { name: "Open" }).click();
    const calls = gw.provider.requests.length;

    await page.getByLabel("Message").fill("/think high");
    await page.getByRole("button", { name: "Send" }).click();
    const log = page.getByRole("log", { name: "Conversation" });
    const answer = log.locator('article[data-role="assistant"][data-state="final"]').last();
    await answer.locator(".bubble-body", { hasText: "high" }).waitFor();
    expect(await answer.locator(".bubble-author").textContent()).toBe(
      `${AGENT_EMOJI} ${AGENT_NAME}`,
    );
    expect(gw.provider.requests).toHaveLength(calls);
    expect(record.errors).toEqual([]);
  });

  it("Regenerate asks the last question again; Edit last message takes it back into the message box", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, TOKEN);
    await page.locator('#connection[data-state="connected"]').waitFor();
    await page.getByLabel("New session key").fill("agent:main:rewind");
    await page.getByRole("button", { name: "Open" }).click();
    const log = page.getByRole("log", { name: "Conversation" });
    const bubbles = () => log.locator("article .bubble-body").allTextContents();

    await page.getByLabel("Message").fill("What is the capital of France?");
    await page.getByRole("button", { name: "Send" }).click();
    await log.locator(".bubble-body", { hasText: REWIND_ANSWERS[0] }).waitFor();
    await page.locator("#chat-regenerate:not([disabled])").waitFor();

    await page.getByRole("button", { name: "Regenerate" }).click();
    await log.locator(".bubble-body", { hasText: REWIND_ANSWERS[1] }).waitFor();
    await page.locator("#chat-regenerate:not([disabled])").waitFor();
    // The first answer left the conversation; the question is asked once.
    expect(await bubbles()).toEqual(["What is the capital of France?", REWIND_ANSWERS[1]]);

    await page.getByRole("button", { name: "Edit last message" }).click();
    const input = page.getByLabel("Message");
    await expect.poll(() => input.inputValue()).toBe("What is the capital of France?");
    await log.locator("article").first().waitFor({ state: "detached" });
    expect(await bubbles()).toEqual([]);
    await input.fill("What is the capital of Germany?");
    await page.getByRole("button", { name: "Send" }).click();
    await log.locator(".bubble-body", { hasText: REWIND_ANSWERS[2] }).waitFor();
    expect(await bubbles()).toEqual(["What is the capital of Germany?", REWIND_ANSWERS[2]]);

    // The model saw only the edited conversation.
    const last = gw.provider.requests.at(-1)!;
    expect(JSON.stringify(last.messages)).toContain("Germany");
    expect(JSON.stringify(last.messages)).not.toContain("France");
    // And so does the history, after a reload.
    await page.reload();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await log.locator(".bubble-body", { hasText: REWIND_ANSWERS[2] }).waitFor();
    expect(await bubbles()).toEqual(["What is the capital of Germany?", REWIND_ANSWERS[2]]);
    expect(record.errors).toEqual([]);
  });

  it("lists cron jobs, nodes and presence, and runs a cron job now on request", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, TOKEN);
    await page.locator('#connection[data-state="connected"]').waitFor();

    const job = page.locator(`#cron-body tr[data-job-id="${CRON_JOB.id}"]`);
    await job.waitFor();
    expect(await job.locator("th").textContent()).toContain(CRON_JOB.name);
    expect(await job.locator("th").textContent()).toContain("0 2 * * * (UTC)");
    expect(gw.cronRuns).toEqual([]);
    await job.getByRole("button", { name: `Run ${CRON_JOB.name} now` }).click();
    await page.getByText(`${CRON_JOB.name} started.`).waitFor();
    expect(gw.cronRuns).toEqual([{ id: CRON_JOB.id, mode: "force" }]);

    // This tab is among the connected clients; no node is paired.
    await page
      .getByRole("list", { name: "Connected clients" })
      .getByText("BeamClaw dashboard")
      .first()
      .waitFor();
    expect(await page.getByText("No nodes paired.").isVisible()).toBe(true);
    expect(record.errors).toEqual([]);
    expectOnlyGatewayRequests(record);
  });

  it("shows a lost connection, retries with backoff while the gateway is down, and reconnects when it is back", async () => {
    const record = await open();
    const { page } = record;
    await logIn(record, TOKEN);
    await page.locator('#connection[data-state="connected"]').waitFor();

    await gw.gateway.stop({ reason: "restart for the test" });
    const status = page.locator("#connection-text");
    // The first retry finds nothing listening; the next one is scheduled, later.
    await status.filter({ hasText: "(attempt 2)" }).waitFor();
    expect(await status.textContent()).toMatch(
      /^Connection lost; retrying in \d+ s \(attempt 2\)$/,
    );
    expect(await page.locator("#connection").getAttribute("data-state")).toBe("reconnecting");
    expect(await page.getByLabel("Message").isDisabled()).toBe(true);
    expect(await page.getByRole("button", { name: "Retry now" }).isVisible()).toBe(true);

    await gw.restartGateway();
    await page.locator('#connection[data-state="connected"]').waitFor({ timeout: 15_000 });
    expect(await page.getByLabel("Message").isEnabled()).toBe(true);
    expect(await page.getByRole("button", { name: "Retry now" }).isVisible()).toBe(false);
    // Still logged in: the dashboard, not the login form.
    expect(await page.getByLabel("Gateway token").isVisible()).toBe(false);
    // Chromium reports the refused connection attempts; nothing else went wrong.
    const unexpected = record.errors.filter((e) => !/WebSocket connection to '.*' failed/.test(e));
    expect(unexpected).toEqual([]);
  });
});
