/**
 * `next dev` keeps one runtime across hot reloads. The dev server runs on a throwaway copy of
 * the app (inside this package, so that it resolves the same node_modules), and the test edits
 * the copy's `lib/runtime.ts`: the module is evaluated again, the runtime on `globalThis` is
 * not replaced, and a run that was waiting for approval before the reload finishes after it.
 */
import { randomUUID } from "node:crypto";
import { appendFile, cp, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RunEvent } from "@beamclaw/core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { readServerSentEvents } from "../lib/sse";
import { health, type NextServer, startNext, waitFor } from "./support/next-server";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
/** Matches `.hmr-app-*` in the package's .gitignore. */
const COPY_DIR = join(APP_DIR, `.hmr-app-${randomUUID().slice(0, 8)}`);

let server: NextServer;

beforeAll(async () => {
  await mkdir(COPY_DIR);
  await Promise.all(
    ["app", "lib", "next.config.ts"].map((entry) =>
      cp(join(APP_DIR, entry), join(COPY_DIR, entry), { recursive: true }),
    ),
  );
  server = await startNext({
    command: "dev",
    cwd: COPY_DIR,
    env: { BEAMCLAW_SCRIPTED: "1" },
    readyTimeoutMs: 60_000,
  });
});

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    await rm(COPY_DIR, { recursive: true, force: true });
  }
});

function postJson(path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

it("a hot reload of lib/runtime.ts evaluates it again but keeps the runtime, its sessions and its pending approvals", async () => {
  const before = await health(server);
  expect(before.runtimesCreated).toBe(1);

  // A run that waits for approval across the reload.
  const chat = await postJson("/api/chat", {
    sessionKey: "agent:main:direct:hot-reload",
    text: "survive the reload",
  });
  // Read by hand: leaving a `for await` early would cancel the stream, which aborts the run.
  const events = readServerSentEvents<RunEvent>(chat.body!);
  const nextEvent = async (): Promise<RunEvent> => {
    const { value, done } = await events.next();
    if (done) throw new Error("the stream ended early");
    return value;
  };
  let request: RunEvent | undefined;
  while (request?.type !== "tool-approval-request") request = await nextEvent();
  // The edit next dev picks up: lib/runtime.ts is evaluated again.
  await appendFile(join(COPY_DIR, "lib", "runtime.ts"), `\n// hot reload ${Date.now()}\n`);
  const after = await waitFor(
    () => health(server),
    (h) => h.moduleEvaluations > before.moduleEvaluations,
    30_000,
    "lib/runtime.ts to be evaluated again",
  );
  expect(after.runtimeId).toBe(before.runtimeId);
  expect(after.runtimesCreated).toBe(1);
  expect(after.pid).toBe(before.pid);
  expect(after.pendingApprovals).toBe(1);

  // The reloaded approvals route answers the request of the run started before the reload.
  const answer = await postJson("/api/approvals", {
    requestId: request.requestId,
    decision: "allow-once",
  });
  expect(await answer.json()).toEqual({ answered: true });
  let end: RunEvent = await nextEvent();
  while (end.type !== "run-end") end = await nextEvent();
  expect(end.result.status).toBe("completed");
  expect(end.result.text).toMatch(/^Saved note #\d+: "survive the reload"\.$/);
});
