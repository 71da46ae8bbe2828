/**
 * A scripted OpenAI-compatible Chat Completions server on 127.0.0.1 (port 0) that misbehaves
 * on request: each `POST /v1/chat/completions` takes the next behaviour from a queue (or the
 * default one) and acts it out over a real socket: a normal streamed answer, a tool call, an
 * HTTP error status (with `Retry-After`), no answer at all, a malformed chunk, a stream cut
 * before `[DONE]`, or a slow stream. It records every request. `close()` ends every
 * connection, including ones it left hanging.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the server does with one request. */
export type Behaviour =
  /** Streams `chunks` as content (`delayMs` apart), `finish_reason: "stop"`, usage, `[DONE]`. */
  | { kind: "text"; chunks: string[]; delayMs?: number }
  /** Streams one tool call, `finish_reason: "tool_calls"`, `[DONE]`. */
  | { kind: "tool-call"; name: string; args: unknown }
  /** Answers `status` with an OpenAI-style error body (and `retry-after` seconds if given). */
  | { kind: "status"; status: number; retryAfterS?: number; message?: string }
  /** Reads the request and never answers. */
  | { kind: "hang" }
  /** Streams a content chunk, then a `data:` line that is not JSON, then `[DONE]`. */
  | { kind: "malformed" }
  /** Streams `chunks`, then closes the connection without a finish chunk or `[DONE]`. */
  | { kind: "truncated"; chunks: string[] }
  /** Waits for `until` (a gate the test opens), then acts as `next`. */
  | { kind: "gated"; until: Promise<unknown>; next: Behaviour };

/** A request as received. */
export interface RecordedRequest {
  at: number;
  body: { messages: Array<{ role: string; content?: unknown }>; stream?: boolean } & Record<
    string,
    unknown
  >;
}

export interface ModelServer {
  readonly port: number;
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  /** Appends behaviours for the next requests, in order. */
  push(...behaviours: Behaviour[]): void;
  /** What requests get once the queue is empty. Default: `text` "ok". */
  setDefault(behaviour: Behaviour): void;
  close(): Promise<void>;
}

function chunk(id: string, delta: unknown, finishReason: string | null = null): string {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "fault-model",
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  })}\n\n`;
}

function usage(id: string): string {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "fault-model",
    choices: [],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  })}\n\n`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function act(behaviour: Behaviour, id: string, res: ServerResponse): Promise<void> {
  switch (behaviour.kind) {
    case "gated":
      await behaviour.until;
      return act(behaviour.next, id, res);
    case "hang":
      return;
    case "status": {
      res.writeHead(behaviour.status, {
        "content-type": "application/json",
        ...(behaviour.retryAfterS === undefined
          ? {}
          : { "retry-after": String(behaviour.retryAfterS) }),
      });
      res.end(
        JSON.stringify({
          error: {
            message: behaviour.message ?? `scripted HTTP ${behaviour.status}`,
            type: behaviour.status === 429 ? "rate_limit_error" : "server_error",
            code: null,
          },
        }),
      );
      return;
    }
    default:
      break;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(chunk(id, { role: "assistant", content: "" }));
  switch (behaviour.kind) {
    case "text":
      for (const text of behaviour.chunks) {
        if (res.destroyed) return;
        res.write(chunk(id, { content: text }));
        if (behaviour.delayMs !== undefined) await sleep(behaviour.delayMs);
      }
      res.write(chunk(id, {}, "stop"));
      res.write(usage(id));
      res.end("data: [DONE]\n\n");
      return;
    case "tool-call":
      res.write(
        chunk(id, {
          tool_calls: [
            {
              index: 0,
              id: `call_${id}`,
              type: "function",
              function: { name: behaviour.name, arguments: JSON.stringify(behaviour.args) },
            },
          ],
        }),
      );
      res.write(chunk(id, {}, "tool_calls"));
      res.write(usage(id));
      res.end("data: [DONE]\n\n");
      return;
    case "malformed":
      res.write(chunk(id, { content: "partial " }));
      res.write('data: {"choices": [ this is not json\n\n');
      res.end("data: [DONE]\n\n");
      return;
    case "truncated":
      for (const text of behaviour.chunks) res.write(chunk(id, { content: text }));
      await sleep(20);
      res.socket?.destroy();
      return;
  }
}

/** Starts a server; stop it with `close()`. */
export async function startModelServer(): Promise<ModelServer> {
  const queue: Behaviour[] = [];
  let fallback: Behaviour = { kind: "text", chunks: ["ok"] };
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      text += d;
    });
    req.on("end", () => {
      requests.push({ at: Date.now(), body: JSON.parse(text) });
      const behaviour = queue.shift() ?? fallback;
      act(behaviour, `chatcmpl-${++count}`, res).catch(() => res.destroy());
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    push: (...behaviours) => queue.push(...behaviours),
    setDefault: (behaviour) => {
      fallback = behaviour;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
