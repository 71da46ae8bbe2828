/**
 * Hostile text in every panel of the dashboard, driven in a real headless Chromium against a
 * real gateway on 127.0.0.1: what a prompt-injected model writes (its answer, a tool call's
 * arguments), what a tool brings back (a fetched web page), an error message, a session's
 * label, the agent's name, a connected client's name, a cron job's name, schedule and status.
 * Each carries markup that runs script the moment it is parsed, and a Markdown link to a
 * `javascript:` URL. The page is opened with the gateway's CSP bypassed, so the only thing
 * standing between the markup and `window.__pwned` is the dashboard drawing it as text.
 */
import { defineTool } from "@beamclaw/core";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { GatewayCronBackend } from "../src/index.js";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import { closeClients, type Stack, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

/** Text that sets `window.__pwned` to `where` if any of it is ever parsed as HTML or followed. */
function hostile(where: string): string {
  return (
    `${where}: <img src=x onerror="window.__pwned='${where}'">` +
    `<svg><svg onload="window.__pwned='${where}-svg'"></svg></svg>` +
    `<script>window.__pwned='${where}-script'</script><b>bold</b> ` +
    `[click here](javascript:window.__pwned='${where}-link') ` +
    `<a href="javascript:window.__pwned='${where}-a'" target=_blank>open</a>`
  );
}

/** A shorter one, for fields with a small limit (an agent's name: 100 characters). */
function hostileShort(where: string): string {
  return `${where}: <img src=x onerror="window.__pwned='${where}'"><b>bold</b>`;
}

const SESSION = "agent:main:hostile";
const AGENT_NAME = hostileShort("agent-name");
const TOOL_ARGS = { url: hostile("tool-args") };
const PAGE = hostile("tool-result");
const ANSWER = hostile("model-answer");
const FAILURE = hostile("error-message");
const LABEL = hostile("session-label");
const CLIENT_NAME = hostile("client-name");
const JOB = {
  id: "hostile-job",
  name: hostile("cron-name"),
  enabled: true,
  createdAtMs: 1_700_000_000_000,
  updatedAtMs: 1_700_000_000_000,
  schedule: { kind: "cron", expr: hostile("cron-expr"), tz: "UTC" },
  sessionTarget: "isolated",
  wakeMode: "now",
  payload: { kind: "agentTurn", message: "Report" },
  state: { nextRunAtMs: 1_900_000_000_000, lastRunAtMs: Date.now(), lastStatus: hostile("cron") },
};

/** A cron service listing {@link JOB}. */
const cron: GatewayCronBackend = {
  list: async () => ({ jobs: [JOB], total: 1 }),
  status: async () => ({ enabled: true, jobs: 1 }),
  add: () => Promise.reject(new Error("not supported")),
  update: () => Promise.reject(new Error("not supported")),
  remove: () => Promise.reject(new Error("not supported")),
  run: async () => ({ ok: true, ran: true }),
  runs: async () => ({ entries: [] }),
};

/** What the page must never contain: elements or URLs that only parsed markup could make. */
const PARSED = [
  "#app-view img",
  "#app-view svg",
  "#app-view script",
  "#app-view b",
  "#app-view a",
  "#app-view [onerror]",
  "#app-view [onload]",
  '#app-view [href^="javascript:" i]',
  "#app-view [target]",
].join(", ");

let stack: Stack;
let browser: Browser;
let operator: TestClient;
const pages: PageRecord[] = [];

beforeAll(async () => {
  const fetchPage = defineTool({
    name: "fetch_page",
    description: "Fetches a web page",
    parameters: z.object({ url: z.string() }),
    execute: () => ({ html: PAGE }),
  });
  stack = await startStack({
    responses: [
      { toolCalls: [{ toolName: "fetch_page", input: TOOL_ARGS }] },
      { text: ANSWER },
      { error: new Error(FAILURE) },
    ],
    agents: [
      { id: "main", model: "scripted/m1", tools: ["fetch_page"], identity: { name: AGENT_NAME } },
    ],
    runtime: { tools: [fetchPage] },
    gateway: { cron },
  });
  browser = await launchChromium();
  // Another client whose name (shown among the connected clients) is markup.
  operator = await TestClient.open(stack.url);
  const params = operator.connectParams({ token: TOKEN });
  params.client = { ...(params.client as object), displayName: CLIENT_NAME };
  operator.hello = await operator.request("connect", params);
}, 30_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await closeClients();
  await stopStacks();
}, 30_000);

/** Whether anything the hostile text carries ran, and every element it could have made. */
async function expectNothingParsed(page: Page): Promise<void> {
  expect(await page.evaluate("window.__pwned")).toBeUndefined();
  expect(await page.locator(PARSED).count()).toBe(0);
}

describe("hostile text in the dashboard", () => {
  it("shows markup from the model, tools, errors, sessions, agents, clients and cron jobs as text, and none of it runs", async () => {
    // The CSP is out of the way: only the dashboard's own drawing keeps the markup inert.
    const record = await openPage(browser, { bypassCSP: true });
    pages.push(record);
    const { page } = record;
    await page.goto(`http://127.0.0.1:${stack.port}/`);
    await page.getByLabel("Gateway token").fill(TOKEN);
    await page.getByRole("button", { name: "Connect", exact: true }).click();
    await page.locator('#connection[data-state="connected"]').waitFor();

    await page.getByLabel("New session key").fill(SESSION);
    await page.getByRole("button", { name: "Open", exact: true }).click();
    await page.getByLabel("Message").fill("Read that page for me");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    // The model's answer, signed with the agent's name, once it has finished.
    const log = page.getByRole("log", { name: "Conversation" });
    const answer = log.locator('article[data-role="assistant"][data-state="final"]').last();
    await answer.waitFor();
    expect(await answer.locator(".bubble-body").textContent()).toBe(ANSWER);
    expect(await answer.locator(".bubble-author").textContent()).toBe(AGENT_NAME);
    // The tool call line: its arguments, and the page it brought back.
    const tool = log.locator('article[data-role="tool"][data-state="done"]');
    await tool.waitFor();
    expect(await tool.locator(".bubble-body").textContent()).toBe(
      `fetch_page ${JSON.stringify(TOOL_ARGS)}`,
    );
    // (As compact JSON, cut at 300 characters.)
    expect(await tool.locator(".bubble-note").textContent()).toBe(
      `done: ${JSON.stringify({ html: PAGE }).slice(0, 299)}…`,
    );

    // A run that fails with a message made of markup.
    await page.getByLabel("Message").fill("Again");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const failed = log.locator('article[data-role="assistant"][data-state="error"]');
    await failed.waitFor();
    expect(await failed.locator(".bubble-note").textContent()).toBe(
      `Error: all providers failed: scripted/m1#1: ${FAILURE}`,
    );
    expect(await page.locator("#chat-run-state").textContent()).toBe(
      `Failed: all providers failed: scripted/m1#1: ${FAILURE}`,
    );

    // The session's label, as another client set it.
    await operator.request("sessions.patch", { key: SESSION, label: LABEL });
    const session = page.locator(`#sessions-list li[data-session-key="${SESSION}"]`);
    await session.locator(".session-title", { hasText: "session-label:" }).waitFor();
    expect(await session.locator(".session-title").textContent()).toBe(LABEL);

    // The other client among the connected ones, and the cron job.
    const presence = page.locator("#presence-list li strong", { hasText: "client-name:" });
    await presence.waitFor();
    expect(await presence.textContent()).toBe(CLIENT_NAME);
    const job = page.locator(`#cron-body tr[data-job-id="${JOB.id}"]`);
    await job.waitFor();
    expect(await job.locator(".job-name").textContent()).toBe(JOB.name);
    expect(await job.locator(".job-schedule").textContent()).toBe(`${JOB.schedule.expr} (UTC)`);
    expect(await job.locator(".run-line .status").textContent()).toBe(JOB.state.lastStatus);

    // The session's usage under its label, and its cost log with the model's answer.
    await page.locator("#usage-refresh").click();
    const usage = page.locator(`#usage-sessions-body tr[data-session-key="${SESSION}"]`);
    await usage.locator("button", { hasText: "session-label:" }).click();
    const entry = page.locator("#usage-log-list .log-text", { hasText: "model-answer:" });
    await entry.first().waitFor();
    expect(await entry.first().textContent()).toBe(ANSWER);
    expect(await page.locator("#usage-log-title").textContent()).toBe(`Cost log of ${LABEL}`);

    // Every element the page drew is its own; nothing ran, nothing loaded `/x`, no errors.
    await expectNothingParsed(page);
    expect(record.requests.filter((url) => new URL(url).pathname === "/x")).toEqual([]);
    expect(record.errors).toEqual([]);
  });
});
