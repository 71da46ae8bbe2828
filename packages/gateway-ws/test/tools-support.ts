/**
 * Helpers of the tool-wiring tests: a scripted OpenAI-compatible server (Chat Completions
 * streaming, with tool calls), a fake paired node that really runs `system.run` in a
 * directory of its own, and a look at the process table through /proc. Not a test file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { expect } from "vitest";
import type { DeviceIdentity } from "../src/auth/device-identity.js";
import { rpcError, TestClient, type Wire } from "./support.js";

/** One reply of the scripted model. */
export interface ModelReply {
  text?: string;
  toolCalls?: Array<{ name: string; input: unknown }>;
}

/** A Chat Completions request body as the server got it. */
export interface ChatBody {
  model: string;
  messages: Array<{
    role: string;
    content: string | null;
    tool_call_id?: string;
    tool_calls?: unknown[];
  }>;
  tools?: Array<{ type: string; function: { name: string } }>;
}

/** The tool results in a request, parsed (the model sees them as JSON text). */
export function toolResults(body: ChatBody): Wire[] {
  return body.messages
    .filter((m) => m.role === "tool")
    .map((m) => {
      try {
        return JSON.parse(m.content ?? "");
      } catch {
        return m.content;
      }
    });
}

const servers = new Set<Server>();

/** Closes every model server (call from `afterEach`). */
export async function closeModelServers(): Promise<void> {
  for (const server of [...servers]) {
    servers.delete(server);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * A local OpenAI-compatible server whose n-th answer (0-based) is `script(body, n)`, streamed
 * the way Chat Completions streams (text deltas or tool-call deltas, then usage, then
 * `[DONE]`).
 */
export async function modelServer(
  script: (body: ChatBody, n: number) => ModelReply,
): Promise<{ baseUrl: string; bodies: ChatBody[] }> {
  const bodies: ChatBody[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ChatBody;
      const n = bodies.length;
      bodies.push(body);
      const reply = script(body, n);
      res.writeHead(200, { "content-type": "text/event-stream" });
      const base = { id: `c${n}`, object: "chat.completion.chunk", created: 1, model: body.model };
      const send = (choice: unknown) =>
        res.write(`data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`);
      if (reply.toolCalls !== undefined) {
        send({
          index: 0,
          delta: {
            role: "assistant",
            tool_calls: reply.toolCalls.map((call, i) => ({
              index: i,
              id: `call_${n}_${i}`,
              type: "function",
              function: { name: call.name, arguments: JSON.stringify(call.input) },
            })),
          },
          finish_reason: null,
        });
        send({ index: 0, delta: {}, finish_reason: "tool_calls" });
      } else {
        send({
          index: 0,
          delta: { role: "assistant", content: reply.text ?? "" },
          finish_reason: null,
        });
        send({ index: 0, delta: {}, finish_reason: "stop" });
      }
      res.write(
        `data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n`,
      );
      res.end("data: [DONE]\n\n");
    });
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { baseUrl: `http://127.0.0.1:${port}/v1`, bodies };
}

/** A `system.run` request as the fake node received it. */
export interface SystemRun {
  command: string[];
  rawCommand: string;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  approved: boolean;
  approvalDecision: string;
}

const nodeChildren = new Set<ChildProcess>();

/** Kills whatever a fake node still runs (call from `afterEach`). */
export async function killNodeChildren(): Promise<void> {
  await Promise.all(
    [...nodeChildren].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("close", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
  nodeChildren.clear();
}

/**
 * A node host as OpenClaw's `openclaw node run` behaves toward the gateway: it signs in with
 * its device key, is refused as `NOT_PAIRED` until an operator approves its pairing request
 * (`node.pair.approve`), then connects with role `node` declaring `system.run`, and answers
 * each `node.invoke.request` by running the argv it was sent — as a real process, in `root`
 * or below only — and reporting `{ exitCode, timedOut, success, stdout, stderr }`.
 */
export async function pairedNode(
  url: string,
  token: string,
  device: DeviceIdentity,
  operator: TestClient,
  root: string,
): Promise<{ node: TestClient; runs: SystemRun[] }> {
  const connectOptions = {
    token,
    role: "node",
    scopes: [],
    device,
    clientId: "node-host",
    mode: "node",
    caps: ["system"],
    commands: ["system.run"],
  };
  const asking = await TestClient.open(url);
  expect((await rpcError(asking.sendConnect(connectOptions))).code).toBe("NOT_PAIRED");
  await asking.close();
  const requested = await operator.waitEvent(
    "node.pair.requested",
    (p) => p.deviceId === device.deviceId,
  );
  await operator.request("node.pair.approve", { requestId: requested.payload.requestId });
  const node = await TestClient.connect(url, connectOptions);
  const runs: SystemRun[] = [];
  let seen = 0;
  const serve = () => {
    for (const event of node.events.slice(seen)) {
      seen++;
      if (event.event !== "node.invoke.request") continue;
      const { id, nodeId, command, paramsJSON } = event.payload;
      const reply = (ok: boolean, payload: unknown, error?: { code: string; message: string }) =>
        node
          .request("node.invoke.result", {
            id,
            nodeId,
            ok,
            ...(ok ? { payloadJSON: JSON.stringify(payload) } : { error }),
          })
          .catch(() => undefined);
      if (command !== "system.run") {
        void reply(false, undefined, { code: "UNKNOWN_COMMAND", message: command });
        continue;
      }
      const params = JSON.parse(paramsJSON) as SystemRun;
      runs.push(params);
      const inside = path.resolve(params.cwd);
      if (inside !== root && !inside.startsWith(`${root}/`)) {
        void reply(false, undefined, {
          code: "SYSTEM_RUN_DENIED",
          message: `cwd ${params.cwd} is outside this node's root`,
        });
        continue;
      }
      const [file, ...args] = params.command;
      const child = spawn(file!, args, { cwd: inside, env: params.env, stdio: "pipe" });
      nodeChildren.add(child);
      let stdout = "";
      let stderr = "";
      let failed: string | undefined;
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString("utf8");
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString("utf8");
      });
      child.on("error", (error) => {
        failed = error.message;
      });
      child.on("close", (code) => {
        nodeChildren.delete(child);
        void reply(true, {
          exitCode: code,
          timedOut: false,
          success: code === 0,
          stdout,
          stderr,
          ...(failed === undefined ? {} : { error: failed }),
        });
      });
    }
  };
  node.ws.on("message", () => setImmediate(serve));
  return { node, runs };
}

/** Live processes of process group `pgid` (zombies excluded), read from /proc. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") {
        out.push(Number(name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
