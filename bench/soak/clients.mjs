/**
 * The soak's clients. `GatewayWsClient` speaks OpenClaw's gateway protocol (v4) over a real
 * WebSocket: `connect` with the token, `chat.send`, and the `chat` events that follow (every
 * operator receives every run's events, as OpenClaw's clients do; each client keeps only its
 * own). `httpTurn` posts one turn to the OpenAI-compatible endpoint, streaming or not, over a
 * keep-alive agent. Both measure a turn from the request to its final event or `[DONE]`.
 */
import http from "node:http";
import WebSocket from "ws";

/** A turn that failed, with what the client saw. */
export class TurnError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** One WebSocket client of the gateway. */
export class GatewayWsClient {
  #ws;
  #nextId = 0;
  #pending = new Map();
  #runs = new Map();
  #closed;

  constructor(ws) {
    this.#ws = ws;
    this.#closed = new Promise((resolve) => ws.once("close", resolve));
    ws.on("message", (data) => this.#onFrame(data));
    ws.on("close", () => {
      const error = new TurnError("connection closed", "CLOSED");
      for (const p of this.#pending.values()) p.reject(error);
      for (const r of this.#runs.values()) r.reject(error);
      this.#pending.clear();
      this.#runs.clear();
    });
    ws.on("error", () => undefined);
  }

  /** Opens a connection and completes the handshake. */
  static async connect(url, token) {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const challenge = new Promise((resolve, reject) => {
      const onMessage = (data) => {
        const frame = JSON.parse(String(data));
        if (frame.type === "event" && frame.event === "connect.challenge") {
          ws.off("message", onMessage);
          resolve(frame.payload);
        }
      };
      ws.on("message", onMessage);
      ws.once("error", reject);
      ws.once("close", () => reject(new TurnError("closed during the handshake", "CLOSED")));
    });
    await challenge;
    const client = new GatewayWsClient(ws);
    await client.request("connect", {
      minProtocol: 4,
      maxProtocol: 4,
      client: { id: "soak", version: "1.0.0", platform: process.platform, mode: "test" },
      role: "operator",
      scopes: ["operator.read", "operator.write", "operator.admin"],
      caps: [],
      auth: { token },
    });
    return client;
  }

  /** Sends a request; resolves with its payload, rejects with a TurnError carrying the code. */
  request(method, params) {
    const id = `q${++this.#nextId}`;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  /**
   * One turn: `chat.send`, resolved once the gateway acknowledged the message (rejects with a
   * TurnError when it was refused), with `done`: the run's end, resolving with the final text
   * or rejecting with a TurnError for an `error`/`aborted` end, a closed connection, or no end
   * within `timeoutMs`.
   */
  async send(sessionKey, message, idempotencyKey, timeoutMs = 60_000) {
    let timer;
    const done = new Promise((resolve, reject) => {
      this.#runs.set(idempotencyKey, { resolve, reject });
      timer = setTimeout(() => {
        this.#runs.delete(idempotencyKey);
        reject(new TurnError(`no final event within ${timeoutMs} ms`, "TURN_TIMEOUT"));
      }, timeoutMs);
    }).finally(() => clearTimeout(timer));
    done.catch(() => undefined);
    try {
      await this.request("chat.send", { sessionKey, message, idempotencyKey });
    } catch (error) {
      this.#runs.get(idempotencyKey)?.reject(error);
      this.#runs.delete(idempotencyKey);
      throw error;
    }
    return { done };
  }

  close() {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(1000);
    else this.#ws.terminate();
    return this.#closed;
  }

  #onFrame(data) {
    const text = String(data);
    const frame = JSON.parse(text);
    if (frame.type === "res") {
      const pending = this.#pending.get(frame.id);
      if (pending === undefined) return;
      this.#pending.delete(frame.id);
      if (frame.ok) pending.resolve(frame.payload);
      else
        pending.reject(
          new TurnError(
            frame.error?.message ?? "request failed",
            frame.error?.details?.code ?? frame.error?.code,
          ),
        );
      return;
    }
    if (frame.type !== "event" || frame.event !== "chat") return;
    const payload = frame.payload;
    const run = this.#runs.get(payload?.runId);
    if (run === undefined) return;
    if (payload.state === "final") {
      this.#runs.delete(payload.runId);
      const content = payload.message?.content;
      run.resolve(Array.isArray(content) ? content.map((c) => c.text ?? "").join("") : "");
    } else if (payload.state === "error" || payload.state === "aborted") {
      this.#runs.delete(payload.runId);
      run.reject(new TurnError(payload.errorMessage ?? `run ${payload.state}`, payload.state));
    }
  }
}

/**
 * One turn over `POST /v1/chat/completions`. `user` keeps a server-side session per user;
 * without it the session is fresh and deleted afterwards. Resolves with the answer's text.
 */
export function httpTurn({ port, token, agent, message, user, stream, timeoutMs = 60_000 }) {
  const body = JSON.stringify({
    model: "beamclaw",
    stream,
    ...(user === undefined ? {} : { user }),
    messages: [{ role: "user", content: message }],
  });
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/v1/chat/completions",
        method: "POST",
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          text += chunk;
        });
        res.on("error", reject);
        res.on("end", () => {
          if (res.statusCode !== 200) {
            let code = `HTTP_${res.statusCode}`;
            try {
              code = JSON.parse(text).error?.code ?? code;
            } catch {}
            reject(new TurnError(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`, code));
            return;
          }
          if (!stream) {
            try {
              resolve(JSON.parse(text).choices[0].message.content);
            } catch (error) {
              reject(new TurnError(`bad completion: ${error.message}`, "BAD_RESPONSE"));
            }
            return;
          }
          if (!text.trimEnd().endsWith("data: [DONE]")) {
            reject(new TurnError("stream ended without [DONE]", "TRUNCATED"));
            return;
          }
          let answer = "";
          for (const block of text.split("\n\n")) {
            if (!block.startsWith("data: {")) continue;
            const chunk = JSON.parse(block.slice(6));
            answer += chunk.choices?.[0]?.delta?.content ?? "";
          }
          resolve(answer);
        });
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new TurnError(`no answer within ${timeoutMs} ms`, "TURN_TIMEOUT")),
    );
    req.on("error", (error) => reject(new TurnError(error.message, error.code ?? "NETWORK")));
    req.end(body);
  });
}
