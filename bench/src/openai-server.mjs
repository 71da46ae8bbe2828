/**
 * A local OpenAI-compatible Chat Completions server for the benchmarks, run in a worker thread
 * by `agent-fixtures.mjs` (`startOpenAIServer`). `POST /v1/chat/completions` with
 * `stream: true` answers in Server-Sent Events, `chat.completion.chunk` format, with no delay:
 * when the last message is not a tool result, one `weather` tool call (name, then arguments),
 * `finish_reason: "tool_calls"`; otherwise the 20 text chunks and `finish_reason: "stop"`;
 * then a usage chunk and `data: [DONE]`. Listens on 127.0.0.1, port 0; posts the port to the
 * parent; closes everything when told to.
 */
import http from "node:http";
import { parentPort, workerData } from "node:worker_threads";

const { toolArgs, chunks } = workerData;
let completions = 0;

function chunk(id, delta, finishReason = null) {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "bench-model",
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  })}\n\n`;
}

function usageChunk(id, prompt, completion) {
  return `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "bench-model",
    choices: [],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  })}\n\n`;
}

function answer(body, res) {
  const request = JSON.parse(body);
  const last = request.messages[request.messages.length - 1];
  const id = `chatcmpl-${++completions}`;
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
  });
  if (last?.role !== "tool") {
    res.write(
      chunk(id, {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            index: 0,
            id: `call_${completions}`,
            type: "function",
            function: { name: "weather", arguments: "" },
          },
        ],
      }),
    );
    res.write(chunk(id, { tool_calls: [{ index: 0, function: { arguments: toolArgs } }] }));
    res.write(chunk(id, {}, "tool_calls"));
    res.write(usageChunk(id, 60, 12));
  } else {
    res.write(chunk(id, { role: "assistant", content: "" }));
    for (const text of chunks) res.write(chunk(id, { content: text }));
    res.write(chunk(id, {}, "stop"));
    res.write(usageChunk(id, 90, 40));
  }
  res.end("data: [DONE]\n\n");
}

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
    return;
  }
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (data) => {
    body += data;
  });
  req.on("end", () => answer(body, res));
});
// Up to 1,000 concurrent clients keep their connections between rounds.
server.keepAliveTimeout = 60_000;
server.maxRequestsPerSocket = 0;

server.listen(0, "127.0.0.1", () => {
  parentPort.postMessage({ type: "listening", port: server.address().port });
});

parentPort.on("message", (message) => {
  if (message?.type !== "close") return;
  server.close();
  server.closeAllConnections();
  parentPort.close();
});
