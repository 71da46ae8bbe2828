/**
 * One BeamClaw runtime per server process, shared by every route handler.
 *
 * Why `globalThis` and not a module-level variable:
 * - `next dev` re-evaluates modules on every hot reload. A module-level `let runtime` would
 *   start a new runtime (supervisors, sessions, timers) on each edit and leak the old one.
 * - Next.js compiles route handlers, pages and server actions into separate bundles; a
 *   module can be instantiated more than once in one process, even in production. The
 *   approval answered in `/api/approvals` must reach the run streaming in `/api/chat`.
 *
 * The runtime is started lazily by the first request that needs it. The slot holds the
 * start promise, so concurrent first requests share one runtime; a failed start is
 * forgotten so that the next request tries again.
 *
 * When the server is told to stop (SIGTERM from Docker or systemd, Ctrl-C), the runtime is
 * stopped: runs in progress end (a stream waiting for a person would otherwise hold
 * `next start`'s graceful close open until the approval timed out) and the store is closed.
 *
 * Server only: route handlers import this; client components never do.
 */
import { randomUUID } from "node:crypto";
import {
  AgentRuntime,
  createProviderChain,
  defineTool,
  MemoryStore,
  type ModelProvider,
  type ModelRequest,
} from "@beamclaw/core";
import { createOpenAICompatibleProvider } from "@beamclaw/providers";
import { z } from "zod";

/** What the process keeps on `globalThis`. */
interface RuntimeSlot {
  runtime: Promise<EmbeddedRuntime> | undefined;
  /** Runtimes this process created: 1 for the life of a server, unless a start failed. */
  created: number;
  /** Evaluations of this module in this process: grows with every hot reload in `next dev`. */
  moduleEvaluations: number;
  /** Whether the SIGTERM/SIGINT listeners that stop the runtime are in place (once per process). */
  stopOnSignal: boolean;
}

/** The process's runtime and what identifies it. */
export interface EmbeddedRuntime {
  /** A random id, new for every runtime created. */
  readonly id: string;
  readonly runtime: AgentRuntime;
  readonly startedAt: number;
  /** The agent's `provider/model`. */
  readonly model: string;
  /** The runtime's store, closed by {@link stopRuntime} after the runtime. */
  readonly store: MemoryStore;
}

/** What `/api/health` reports. */
export interface RuntimeHealth {
  ok: true;
  pid: number;
  runtimeId: string;
  runtimesCreated: number;
  moduleEvaluations: number;
  startedAt: number;
  model: string;
  activeSessions: number;
  pendingApprovals: number;
}

const SLOT = Symbol.for("beamclaw.example-nextjs.runtime");
type GlobalWithSlot = typeof globalThis & { [SLOT]?: RuntimeSlot };

/** The process-wide slot, created by the first evaluation of this module. */
export function runtimeSlot(): RuntimeSlot {
  const g = globalThis as GlobalWithSlot;
  g[SLOT] ??= { runtime: undefined, created: 0, moduleEvaluations: 0, stopOnSignal: false };
  return g[SLOT];
}

runtimeSlot().moduleEvaluations++;

/** The process's runtime, started on first use. */
export function getRuntime(): Promise<EmbeddedRuntime> {
  const slot = runtimeSlot();
  slot.runtime ??= createRuntime().catch((error: unknown) => {
    slot.runtime = undefined;
    throw error;
  });
  stopOnSignal(slot);
  return slot.runtime;
}

/**
 * Stops the process's runtime, if one was started: runs in progress end (their streams get an
 * `error` event, `NO_PROCESS`), pending approvals are withdrawn, the store is closed. Later
 * requests fail.
 */
export async function stopRuntime(): Promise<void> {
  const started = await runtimeSlot().runtime?.catch(() => undefined);
  if (started === undefined) return;
  await started.runtime.stop();
  await started.store.close();
}

/**
 * Stops the runtime when the process is asked to stop. Listeners are added once per process
 * (hot reloads do not add more). Next.js has its own SIGTERM/SIGINT listener, which closes
 * the HTTP server, waits for open responses to end, and exits; stopping the runtime beside
 * it ends the streams it waits for. Without that listener (`NEXT_MANUAL_SIG_HANDLE`), the
 * signal is raised again once the runtime stopped, so that the process still ends.
 */
function stopOnSignal(slot: RuntimeSlot): void {
  if (slot.stopOnSignal) return;
  slot.stopOnSignal = true;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      stopRuntime()
        .catch((error: unknown) => console.error("stopping the BeamClaw runtime failed", error))
        .finally(() => {
          if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
        });
    });
  }
}

/** Identity and counters of the process's runtime (starting it if needed). */
export async function runtimeHealth(): Promise<RuntimeHealth> {
  const { id, runtime, startedAt, model } = await getRuntime();
  const slot = runtimeSlot();
  return {
    ok: true,
    pid: process.pid,
    runtimeId: id,
    runtimesCreated: slot.created,
    moduleEvaluations: slot.moduleEvaluations,
    startedAt,
    model,
    activeSessions: runtime.activeSessions().length,
    pendingApprovals: runtime.approvals?.pending().length ?? 0,
  };
}

async function createRuntime(): Promise<EmbeddedRuntime> {
  runtimeSlot().created++;
  const scripted = process.env.BEAMCLAW_SCRIPTED === "1";
  const provider = scripted
    ? await scriptedModel()
    : createOpenAICompatibleProvider({
        id: "local",
        baseUrl: process.env.BEAMCLAW_BASE_URL ?? "http://127.0.0.1:11434/v1",
        apiKey: process.env.BEAMCLAW_API_KEY ?? "none",
      });
  const model = scripted ? "scripted/demo" : `local/${process.env.BEAMCLAW_MODEL ?? "llama3"}`;

  // Notes live as long as the runtime; a real app would write them somewhere durable.
  const notes: string[] = [];
  const saveNote = defineTool({
    name: "save_note",
    description: "Saves a note for the user. Call it when the user asks you to remember something.",
    parameters: z.object({ text: z.string().min(1).max(2000) }),
    // A side effect: a person approves every call in the browser.
    approval: "always",
    execute: ({ text }) => {
      notes.push(text);
      return { id: notes.length, text };
    },
  });

  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider] }),
    agents: [
      {
        id: "main",
        model,
        systemPrompt:
          "You answer briefly. When the user asks you to remember something, call save_note.",
        tools: ["save_note"],
      },
    ],
    tools: [saveNote],
    approvals: { mode: "on-miss", timeoutMs: 120_000 },
  });
  await runtime.start();
  return { id: randomUUID(), runtime, startedAt: Date.now(), model, store };
}

/** The wait between two streamed text chunks of the scripted model, so the stream is visible. */
const SCRIPTED_CHUNK_DELAY_MS = 120;

/**
 * A model without a network, for CI and the browser test. Every user message becomes a
 * `save_note` call (which needs approval); after the tool result it streams a sentence
 * word by word: the saved note, or that it was not saved when the call was denied.
 *
 * `@beamclaw/core/testing` is loaded only in this mode, never with a real model.
 */
async function scriptedModel(): Promise<ModelProvider> {
  const { createScriptedProvider } = await import("@beamclaw/core/testing");
  return {
    specificationVersion: "v1",
    id: "scripted",
    stream(request, options) {
      // A fresh one-response script per call: the model never runs out of answers.
      return createScriptedProvider({ id: "scripted", responses: [scriptedTurn(request)] }).stream(
        request,
        options,
      );
    },
  };
}

function scriptedTurn(request: ModelRequest) {
  const last = request.messages.at(-1);
  if (last?.role === "tool") {
    const result = last.content[0];
    const saved = result?.output as { id?: number; text?: string } | undefined;
    const sentence =
      result === undefined || result.isError === true || saved?.id === undefined
        ? "Okay, I did not save that note."
        : `Saved note #${saved.id}: "${saved.text}".`;
    return {
      text: sentence.split(/(?<= )/),
      chunkDelayMs: SCRIPTED_CHUNK_DELAY_MS,
      usage: { inputTokens: 20, outputTokens: 10 },
    };
  }
  const user = request.messages.findLast((message) => message.role === "user");
  const text = user?.content.map((part) => (part.type === "text" ? part.text : "")).join("") ?? "";
  return {
    toolCalls: [
      { toolCallId: `call_${randomUUID()}`, toolName: "save_note", input: { text: text.trim() } },
    ],
    usage: { inputTokens: 20, outputTokens: 5 },
  };
}
