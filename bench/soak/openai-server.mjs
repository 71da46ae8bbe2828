/**
 * The soak's scripted model: a local OpenAI-compatible Chat Completions server (`node:http` on
 * 127.0.0.1, port 0), run as its own process so that neither the gateway nor the clients share
 * its event loop. `POST /v1/chat/completions` answers like a small, fast model: with
 * `stream: true`, `chat.completion.chunk` Server-Sent Events (a role chunk, `SOAK_CHUNKS`
 * content chunks `SOAK_CHUNK_DELAY_MS` apart, a `finish_reason: "stop"` chunk, a usage chunk,
 * `data: [DONE]`); otherwise one `chat.completion`. The answer's length varies with the request
 * count, deterministically.
 *
 *   node openai-server.mjs       prints {"port":N} on stdout, then serves until SIGTERM/SIGINT
 *                                or until stdin closes (its parent went away)
 */
import http from "node:http";

const CHUNKS = Number(process.env.SOAK_CHUNKS ?? 12);
const CHUNK_DELAY_MS = Number(process.env.SOAK_CHUNK_DELAY_MS ?? 2);
let completions = 0;

function words(n) {
  const out = [];
  for (let i = 0; i < CHUNKS; i++)
    out.push(`${i === 0 ? "Answer" : ""} ${n}.${i} `.repeat(1 + ((n + i) % 3)));
  return out;
}

function chunk(id, delta, finishReason = null) {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "soak-model",
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  })}\n\n`;
}

function usage(id, prompt, completion) {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "soak-model",
    choices: [],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  })}\n\n`;
}

function answer(request, res) {
  const n = ++completions;
  const id = `chatcmpl-${n}`;
  const parts = words(n);
  if (request.stream !== true) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id,
        object: "chat.completion",
        created: 1_700_000_000,
        model: "soak-model",
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: parts.join("") },
            finish_reason: "stop",
          },
        ],
        usage: { prompt_tokens: 40, completion_tokens: CHUNKS * 2, total_tokens: 40 + CHUNKS * 2 },
      }),
    );
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(chunk(id, { role: "assistant", content: "" }));
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i < parts.length) {
      res.write(chunk(id, { content: parts[i++] }));
      if (CHUNK_DELAY_MS > 0) setTimeout(next, CHUNK_DELAY_MS);
      else setImmediate(next);
      return;
    }
    res.write(chunk(id, {}, "stop"));
    res.write(usage(id, 40, CHUNKS * 2));
    res.end("data: [DONE]\n\n");
  };
  next();
}

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
    return;
  }
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (data) => {
    body += data;
  });
  req.on("end", () => {
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end('{"error":{"message":"bad json","type":"invalid_request_error"}}');
      return;
    }
    answer(request, res);
  });
});
server.keepAliveTimeout = 60_000;

function shutdown() {
  server.close();
  server.closeAllConnections();
}
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
process.stdin.on("end", shutdown);
process.stdin.on("error", shutdown);
process.stdin.resume();
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
server.on("close", () => {
  process.stdin.pause();
  process.stdin.destroy();
});
