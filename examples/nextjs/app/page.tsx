"use client";

/**
 * The chat page: a message box, the answer streaming in, and an approval prompt when the
 * agent wants to run a tool. Everything runs in the browser against the route handlers:
 * `POST /api/chat` (an SSE stream of run events) and `POST /api/approvals`.
 */
import type { RunEvent, RunStatus } from "@beamclaw/core";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { readServerSentEvents } from "../lib/sse";

type Entry =
  | { kind: "user"; id: number; text: string }
  | { kind: "tool"; id: number; text: string }
  | {
      kind: "assistant";
      id: number;
      text: string;
      status: "streaming" | "stopped" | "error" | RunStatus;
      error?: string;
    };

interface PendingApproval {
  requestId: string;
  toolCallId: string;
  toolName: string;
  display: string;
  input: unknown;
  expiresAt: number;
}

type Phase = "idle" | "streaming" | "awaiting-approval";

/** A per-tab session; `crypto.getRandomValues` also works on plain-HTTP origins. */
function newSessionKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `agent:main:direct:web-${id}`;
}

export default function ChatPage() {
  const [ready, setReady] = useState(false);
  const [entries, setEntries] = useState<Entry[]>([]);
  const [draft, setDraft] = useState("");
  const [phase, setPhase] = useState<Phase>("idle");
  const [approval, setApproval] = useState<PendingApproval | null>(null);
  const [answering, setAnswering] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const sessionKey = useRef("");
  const abort = useRef<AbortController | null>(null);
  const ids = useRef(0);

  // Until hydration has run, the form must not submit (a native submit would reload the page).
  useEffect(() => {
    sessionKey.current = newSessionKey();
    setReady(true);
  }, []);

  const updateAssistant = (id: number, change: (entry: Entry & { kind: "assistant" }) => Entry) =>
    setEntries((all) => all.map((e) => (e.id === id && e.kind === "assistant" ? change(e) : e)));

  function onEvent(assistantId: number, event: RunEvent) {
    switch (event.type) {
      case "text-delta":
        updateAssistant(assistantId, (e) => ({ ...e, text: e.text + event.text }));
        break;
      case "text-reset":
        updateAssistant(assistantId, (e) => ({ ...e, text: "" }));
        break;
      case "tool-approval-request":
        setApproval({
          requestId: event.requestId,
          toolCallId: event.toolCallId,
          toolName: event.toolName,
          display: event.display,
          input: event.input,
          expiresAt: event.expiresAt,
        });
        setPhase("awaiting-approval");
        break;
      case "tool-result": {
        setApproval((current) => (current?.toolCallId === event.toolCallId ? null : current));
        setPhase("streaming");
        const id = ++ids.current;
        const outcome = event.isError ? "not run" : "done";
        // The tool line goes before the answer that is streaming.
        setEntries((all) => {
          const at = all.findIndex((e) => e.id === assistantId);
          const line: Entry = { kind: "tool", id, text: `${event.toolName}: ${outcome}` };
          return at === -1 ? [...all, line] : [...all.slice(0, at), line, ...all.slice(at)];
        });
        break;
      }
      case "error":
        updateAssistant(assistantId, (e) => ({ ...e, error: event.error.message }));
        break;
      case "run-end":
        updateAssistant(assistantId, (e) => ({
          ...e,
          status: event.result.status,
          text: e.text === "" ? event.result.text : e.text,
          ...(event.result.error ? { error: event.result.error.message } : {}),
        }));
        break;
      default:
        break;
    }
  }

  async function send(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const text = draft.trim();
    if (text === "" || phase !== "idle") return;
    setDraft("");
    setProblem(null);
    const userId = ++ids.current;
    const assistantId = ++ids.current;
    setEntries((all) => [
      ...all,
      { kind: "user", id: userId, text },
      { kind: "assistant", id: assistantId, text: "", status: "streaming" },
    ]);
    setPhase("streaming");
    const controller = new AbortController();
    abort.current = controller;
    try {
      const response = await fetch("/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sessionKey: sessionKey.current, text }),
        signal: controller.signal,
      });
      if (!response.ok || response.body === null) {
        const body = (await response.json().catch(() => null)) as {
          error?: { message?: string };
        } | null;
        throw new Error(body?.error?.message ?? `the server answered ${response.status}`);
      }
      for await (const runEvent of readServerSentEvents<RunEvent>(response.body)) {
        onEvent(assistantId, runEvent);
      }
      // Ended without `run-end` (the server stopped its runtime: an `error` event came last).
      updateAssistant(assistantId, (e) =>
        e.status === "streaming"
          ? { ...e, status: "error", error: e.error ?? "the answer ended early" }
          : e,
      );
    } catch (error) {
      if (controller.signal.aborted) {
        updateAssistant(assistantId, (e) => ({ ...e, status: "stopped" }));
      } else {
        const message = error instanceof Error ? error.message : String(error);
        updateAssistant(assistantId, (e) => ({ ...e, status: "error", error: message }));
      }
    } finally {
      abort.current = null;
      setApproval(null);
      setPhase("idle");
    }
  }

  async function answer(decision: "allow-once" | "deny") {
    if (approval === null) return;
    setAnswering(true);
    try {
      const response = await fetch("/api/approvals", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ requestId: approval.requestId, decision }),
      });
      if (!response.ok) {
        const body = (await response.json().catch(() => null)) as {
          error?: { message?: string };
        } | null;
        setProblem(body?.error?.message ?? `the server answered ${response.status}`);
      }
      setApproval(null);
      setPhase((current) => (current === "awaiting-approval" ? "streaming" : current));
    } finally {
      setAnswering(false);
    }
  }

  return (
    <main data-ready={ready} data-phase={phase}>
      <h1>BeamClaw in Next.js</h1>
      <p>
        The agent runs inside this Next.js server. Ask it to remember something: it will ask you
        before it saves a note.
      </p>

      <ol className="log" aria-label="Conversation">
        {entries.map((entry) =>
          entry.kind === "assistant" ? (
            <li
              key={entry.id}
              className="assistant"
              data-testid="answer"
              data-status={entry.status}
              aria-busy={entry.status === "streaming"}
            >
              {entry.text}
              {entry.status === "stopped" ? <em> (stopped)</em> : null}
              {entry.error ? <span className="error"> {entry.error}</span> : null}
            </li>
          ) : (
            <li key={entry.id} className={entry.kind} data-testid={entry.kind}>
              {entry.text}
            </li>
          ),
        )}
      </ol>

      {approval !== null ? (
        <section className="approval" role="dialog" aria-label="Approval needed">
          <p>
            The agent wants to run <strong>{approval.display}</strong> with:
          </p>
          <pre>{JSON.stringify(approval.input, null, 2)}</pre>
          <button type="button" disabled={answering} onClick={() => void answer("allow-once")}>
            Approve
          </button>{" "}
          <button type="button" disabled={answering} onClick={() => void answer("deny")}>
            Deny
          </button>
        </section>
      ) : null}

      {problem !== null ? (
        <p className="error" role="alert">
          {problem}
        </p>
      ) : null}

      <form onSubmit={(event) => void send(event)}>
        <input
          aria-label="Message"
          placeholder="Remember that the demo is on Friday"
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          maxLength={10_000}
        />
        {phase === "idle" ? (
          <button type="submit" disabled={!ready || draft.trim() === ""}>
            Send
          </button>
        ) : (
          <button type="button" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        )}
      </form>
    </main>
  );
}
