/**
 * The `beamclaw` command as a user runs it: the built `dist/cli.js` in a child process, a
 * `beamclaw.yaml` in a temporary directory, the embedded fs store, and a local
 * OpenAI-compatible server speaking the Chat Completions streaming format.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createFsStore } from "@beamclaw/store-fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { closeClients, TestClient, useSchemaCheck, waitFor } from "./support.js";

useSchemaCheck();

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const TOKEN = "cli-test-token-0123456789";
const children: ChildProcess[] = [];
const servers: Server[] = [];
const dirs: string[] = [];

beforeAll(() => {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (pnpm --filter @beamclaw/gateway-ws build)`);
});

afterEach(async () => {
  await closeClients();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A local server answering `POST /v1/chat/completions` with a streamed reply, as Ollama does. */
async function openAiCompatibleServer(
  reply: string[],
): Promise<{ baseUrl: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      res.writeHead(200, { "content-type": "text/event-stream" });
      const base = {
        id: "chatcmpl-1",
        object: "chat.completion.chunk",
        created: 1,
        model: "llama3",
      };
      for (const [i, text] of reply.entries()) {
        res.write(
          `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: text } : { content: text }, finish_reason: null }] })}\n\n`,
        );
      }
      res.write(
        `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 } })}\n\n`,
      );
      res.end("data: [DONE]\n\n");
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { baseUrl: `http://127.0.0.1:${port}/v1`, bodies };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function configDir(baseUrl: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "bc-cli-"));
  dirs.push(dir);
  await writeFile(
    join(dir, "beamclaw.yaml"),
    [
      "gateway: { host: 127.0.0.1, port: 18789, auth: { mode: token, token: ${BEAMCLAW_GATEWAY_TOKEN} }, http: { chatCompletions: true } }",
      "store: { kind: fs, dir: ./.beamclaw }",
      `providers: { local: { kind: openai-compatible, baseUrl: "${baseUrl}", apiKey: none } }`,
      "agents: { main: { model: local/llama3 } }",
      "",
    ].join("\n"),
  );
  return dir;
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function run(args: string[], env: Record<string, string | undefined> = {}, cwd?: string): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: cwd ?? process.cwd(),
    env: { ...process.env, BEAMCLAW_CONFIG: undefined, BEAMCLAW_GATEWAY_TOKEN: undefined, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString("utf8");
  });
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function startGateway(dir: string): Promise<{ gateway: Run; url: string; port: number }> {
  const gateway = run(["gateway", "--port", "0", "--drain-timeout-ms", "3000"], {
    BEAMCLAW_CONFIG: join(dir, "beamclaw.yaml"),
    BEAMCLAW_GATEWAY_TOKEN: TOKEN,
  });
  const port = await waitFor(
    `the gateway to listen (stderr: ${gateway.stderr()})`,
    () => {
      if (gateway.child.exitCode !== null)
        throw new Error(`the gateway exited: ${gateway.stderr()}`);
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stdout());
      return match === null ? undefined : Number(match[1]);
    },
    15_000,
  );
  return { gateway, url: `ws://127.0.0.1:${port}`, port };
}

describe("beamclaw gateway", () => {
  it("starts from beamclaw.yaml on the fs store, chats through an OpenAI-compatible server, and exits 0 on SIGTERM", async () => {
    const llm = await openAiCompatibleServer(["Hello", " from llama"]);
    const dir = await configDir(llm.baseUrl);
    const { gateway, url } = await startGateway(dir);
    const client = await TestClient.connect(url, { token: TOKEN });
    expect(
      await client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "hi",
        idempotencyKey: "cli-1",
      }),
    ).toEqual({ runId: "cli-1", status: "started" });
    const final = await client.waitEvent(
      "chat",
      (p) => p.runId === "cli-1" && p.state !== "delta",
      15_000,
    );
    expect(final.payload).toMatchObject({
      state: "final",
      message: { content: [{ text: "Hello from llama" }] },
    });
    expect(llm.bodies[0]).toMatchObject({ model: "llama3", stream: true });
    gateway.child.kill("SIGTERM");
    expect(await gateway.exit).toBe(0);
    expect(gateway.stdout()).toContain("stopped");
    expect((await client.closed).code).toBe(1001);
    expect(await readdir(join(dir, ".beamclaw"))).not.toEqual([]);
  });

  it("starts with no reachable provider; the dashboard loads and a chat fails with an error naming the provider", async () => {
    const dir = await configDir(`http://127.0.0.1:${await closedPort()}/v1`);
    const { gateway, url, port } = await startGateway(dir);
    const page = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
    expect(page.status).toBe(200);
    await page.text();
    const client = await TestClient.connect(url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "hi",
      idempotencyKey: "cli-2",
    });
    const failed = await client.waitEvent(
      "chat",
      (p) => p.runId === "cli-2" && p.state !== "delta",
      15_000,
    );
    expect(failed.payload.state).toBe("error");
    expect(failed.payload.errorMessage).toContain("local/llama3");
    expect(failed.payload.errorDetail).toMatchObject({ provider: "local", model: "llama3" });
    gateway.child.kill("SIGINT");
    expect(await gateway.exit).toBe(0);
  });

  it("follows edits of the file: a broken one is logged and kept out, a restart-only one is logged as such", async () => {
    const dir = await configDir("http://127.0.0.1:9/v1");
    const file = join(dir, "beamclaw.yaml");
    const good = await readFile(file, "utf8");
    const { gateway } = await startGateway(dir);
    await writeFile(file, `${good}agents: { main: { model: [ }\n`);
    await waitFor(
      "the broken edit to be logged",
      () => gateway.stderr().includes("invalid; the running one stays") || undefined,
      10_000,
    );
    expect(gateway.stderr()).toMatch(/line 5, column \d+/);
    // The gateway's address and the store are read at start: an edit of them says so.
    await writeFile(
      file,
      good.replace("port: 18789", "port: 18790").replace("dir: ./.beamclaw", "dir: ./elsewhere"),
    );
    const line = await waitFor(
      "the restart-only edit to be logged",
      () => gateway.stderr().match(/^.*gateway\.port.*$/m)?.[0],
      10_000,
    );
    expect(line).toContain("store.dir");
    expect(line).toContain("restart");
    expect(gateway.child.exitCode).toBeNull();
    gateway.child.kill("SIGTERM");
    expect(await gateway.exit).toBe(0);
  });

  it("writes the lines it logs itself (an applied edit) as the gateway writes its own: time, level, message", async () => {
    const dir = await configDir("http://127.0.0.1:9/v1");
    const file = join(dir, "beamclaw.yaml");
    const good = await readFile(file, "utf8");
    const { gateway } = await startGateway(dir);
    // The gateway's own line, from its logger.
    const own = await waitFor(
      "the gateway's listening line",
      () => gateway.stderr().match(/^.* listening on http:.*$/m)?.[0],
      10_000,
    );
    const timed = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (?:info|warn|error) /;
    expect(own).toMatch(timed);
    await writeFile(
      file,
      good.replace("model: local/llama3 }", 'model: local/llama3, systemPrompt: "Be brief." }'),
    );
    const applied = await waitFor(
      "the applied edit to be logged",
      () => gateway.stderr().match(/^.*config: agents applied.*$/m)?.[0],
      10_000,
    );
    expect(applied).toMatch(timed);
    expect(applied).toMatch(/ info config: agents applied$/);
    gateway.child.kill("SIGTERM");
    expect(await gateway.exit).toBe(0);
  });

  it("refuses to start without BEAMCLAW_GATEWAY_TOKEN and says how to set it", async () => {
    const dir = await configDir("http://127.0.0.1:9/v1");
    const gateway = run(["gateway", "--config", join(dir, "beamclaw.yaml")]);
    expect(await gateway.exit).toBe(1);
    expect(gateway.stderr()).toContain("environment variable BEAMCLAW_GATEWAY_TOKEN is not set");
    expect(gateway.stderr()).toContain("--generate-token");
  });
});

/** An OpenAI-compatible server that takes every request and never answers it. */
async function silentServer(): Promise<{ baseUrl: string; asked: () => number }> {
  let asked = 0;
  const server = createServer((req) => {
    req.resume();
    req.on("end", () => {
      asked++;
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { baseUrl: `http://127.0.0.1:${port}/v1`, asked: () => asked };
}

/** Sends a chat completion (that a silent server never answers), without waiting. */
function chatCompletion(port: number, body: Record<string, unknown>): void {
  void fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "beamclaw/main", ...body }),
  }).catch(() => undefined);
}

/**
 * Waits until the keys of the sessions the gateway lists satisfy `done`, asking every 50 ms
 * (well under the gateway's request rate limit).
 */
async function waitForListed(
  what: string,
  client: TestClient,
  done: (keys: string[]) => boolean,
): Promise<string[]> {
  return waitFor(what, async () => {
    const page = await client.request("sessions.list", { limit: 100 });
    const keys = (page.sessions as Array<{ key: string }>).map((s) => s.key).sort();
    if (done(keys)) return keys;
    await new Promise((resolve) => setTimeout(resolve, 50));
    return undefined;
  });
}

/** What the fs store at `dir` holds, read while no gateway has it open. */
async function storeContents(dir: string) {
  const store = createFsStore({ dir });
  await store.open();
  try {
    const sessions = (await store.sessions.list({ limit: 100 })).items.map((s) => s.key).sort();
    const transcripts: Record<string, number> = {};
    for (const key of sessions) transcripts[key] = await store.transcripts.lastSeq(key);
    const pending = (await store.queue.pending()).map((m) => m.sessionKey).sort();
    return { sessions, transcripts, pending };
  } finally {
    await store.close();
  }
}

describe("beamclaw gateway after a forced exit", () => {
  // A stateless chat (no `user`, no session header) cut by SIGKILL leaves its fresh session
  // in the store, its message queued. The next start neither runs it again nor keeps the
  // session: it is deleted, as the end of the request would have deleted it.
  it("deletes the session of a stateless chat cut by it, and replays a kept one's", async () => {
    const llm = await silentServer();
    const dir = await configDir(llm.baseUrl);
    const storeDir = join(dir, ".beamclaw");
    const first = await startGateway(dir);
    chatCompletion(first.port, { messages: [{ role: "user", content: "stateless" }] });
    chatCompletion(first.port, { messages: [{ role: "user", content: "kept" }], user: "alice" });
    await waitFor("both model calls", () => llm.asked() === 2, 15_000);
    const client = await TestClient.connect(first.url, { token: TOKEN });
    await waitForListed("both sessions saved", client, (keys) => keys.length === 2);
    first.gateway.child.kill("SIGKILL");
    await first.gateway.exit;

    // As the killed process left them: both sessions, their messages still queued.
    const left = await storeContents(storeDir);
    const stateless = left.sessions.find((key) => /^agent:main:openai:[0-9a-f-]{36}$/.test(key));
    expect(stateless).toBeDefined();
    expect(left.sessions).toEqual(["agent:main:openai-user:alice", stateless].sort());
    expect(left.transcripts[stateless!]).toBeGreaterThan(0);
    expect(left.pending).toEqual(left.sessions);

    const second = await startGateway(dir);
    const again = await TestClient.connect(second.url, { token: TOKEN });
    // The kept message runs again (the model is asked a third time); the stateless one not.
    await waitFor("the kept message to run again", () => llm.asked() === 3, 15_000);
    await waitForListed(
      "the stateless session gone",
      again,
      (keys) => !keys.includes(stateless!) && keys.includes("agent:main:openai-user:alice"),
    );
    second.gateway.child.kill("SIGTERM");
    expect(await second.gateway.exit).toBe(0);
    expect(llm.asked()).toBe(3);

    const after = await storeContents(storeDir);
    expect(after.sessions).toEqual(["agent:main:openai-user:alice"]);
    expect(after.pending).not.toContain(stateless);
    expect(after.transcripts[stateless!]).toBeUndefined();
    const store = createFsStore({ dir: storeDir });
    await store.open();
    try {
      expect(await store.sessions.get(stateless!)).toBeUndefined();
      expect(await store.transcripts.lastSeq(stateless!)).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe("beamclaw doctor", () => {
  it("passes a good configuration", async () => {
    const dir = await configDir("http://127.0.0.1:9/v1");
    const doctor = run(["doctor", "--config", join(dir, "beamclaw.yaml")], {
      BEAMCLAW_GATEWAY_TOKEN: TOKEN,
    });
    expect(await doctor.exit).toBe(0);
    expect(doctor.stdout()).toMatch(/ready \(\d+ warnings?\)/);
    expect(doctor.stdout()).toContain("providers: local");
  });

  it("lists every problem of a bad configuration and exits 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-cli-"));
    dirs.push(dir);
    await writeFile(
      join(dir, "beamclaw.yaml"),
      "gateway: { host: 0.0.0.0, auth: { mode: none } }\nstore: { kind: memory }\nproviders: { local: { kind: openai-compatible, baseUrl: 'http://127.0.0.1:9/v1' } }\nagents: { main: { model: cloud/gpt } }\n",
    );
    const doctor = run(["doctor", "--config", join(dir, "beamclaw.yaml")]);
    expect(await doctor.exit).toBe(1);
    expect(doctor.stdout()).toContain(
      'model cloud/gpt names provider "cloud", which is not configured',
    );
    expect(doctor.stdout()).toContain("auth.mode is none while listening on 0.0.0.0");
    const invalid = join(dir, "broken.yaml");
    await writeFile(invalid, "agents: { main: { model: nope } }\nbogus: 1\n");
    const second = run(["doctor", "--config", invalid]);
    expect(await second.exit).toBe(1);
    expect(second.stdout()).toContain("agents.main.model");
    expect(second.stdout()).toContain('unknown field(s) "bogus"');
  });
});
