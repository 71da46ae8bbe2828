/**
 * The store's disk fails: it fills up (`ENOSPC`) while a turn is in flight, or it is
 * read-only (`EROFS`) when the gateway starts (a read-only remount needs no process writing
 * to it, so the gateway that acknowledged the message is killed first). `@beamclaw/store-fs`
 * lives on a small real `tmpfs`; the model is a local OpenAI-compatible server over HTTP.
 * The rules: the gateway stays up (or refuses to start, cleanly, with exit code 1) and says
 * what failed with a typed error; a failed write is cut back, never left half-written; once
 * the disk is fixed, every acknowledged message is kept or runs, and no file is corrupt.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient, waitFor } from "./support/client.js";
import { corruptFiles, withReopenedStore } from "./support/files.js";
import {
  PROCESS_TOKEN,
  runGatewayToExit,
  startGatewayProcess,
  stopAllGateways,
  writeGatewayConfig,
} from "./support/gateway-process.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";
import { startStack, stopAllStacks, TOKEN } from "./support/stack.js";
import { mountSmallDisk, type SmallDisk } from "./support/tmpfs.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeAllClients();
  await stopAllStacks();
  await stopAllGateways();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = "agent:main:main";
/** Big enough that writing it needs fresh pages of the full tmpfs. */
const BIG_ANSWER = "y".repeat(256 * 1024);

async function setup(): Promise<{ disk: SmallDisk; model: ModelServer; storeDir: string }> {
  const disk = await mountSmallDisk(4 * 1024 * 1024);
  cleanups.push(() => disk.unmount());
  const model = await startModelServer();
  cleanups.push(() => model.close());
  return { disk, model, storeDir: join(disk.dir, "store") };
}

function healthz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: "127.0.0.1", port, path: "/healthz", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    })
      .on("error", reject)
      .end();
  });
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The session's history as `role:text` lines. */
async function historyLines(client: GatewayClient): Promise<string[]> {
  const history = await client.request("chat.history", { sessionKey: KEY });
  return history.messages.map(
    (m: { role: string; content: Array<{ text?: string }> }) =>
      `${m.role}:${m.content.map((c) => c.text ?? "").join("")}`,
  );
}

describe("store faults", () => {
  it("a full disk (ENOSPC) fails the turn's write with a typed error the client sees; the message stays queued and its turn runs again, completing once space is freed, without a restart; the gateway keeps serving; nothing is lost or doubled and no file is corrupt", async () => {
    const { disk, model, storeDir } = await setup();
    const stack = await startStack({ model, store: storeDir });
    const client = await GatewayClient.connect(stack.url, TOKEN);

    model.push({ kind: "text", chunks: ["first answer"] });
    await client.request("chat.send", { sessionKey: KEY, message: "one", idempotencyKey: "run-1" });
    expect((await client.chatEnd("run-1")).payload.state).toBe("final");

    const gate = deferred();
    const freed = deferred();
    model.push({
      kind: "gated",
      until: gate.promise,
      next: { kind: "text", chunks: [BIG_ANSWER] },
    });
    // The retry of the same turn waits for the disk to be freed before it answers.
    model.push({
      kind: "gated",
      until: freed.promise,
      next: { kind: "text", chunks: ["second answer"] },
    });
    const ack = await client.request("chat.send", {
      sessionKey: KEY,
      message: "two",
      idempotencyKey: "run-2",
    });
    expect(ack).toEqual({ runId: "run-2", status: "started" });
    // Full but for 64 KiB: the 256 KiB answer does not fit.
    expect(await disk.fill(64 * 1024)).toBeGreaterThan(0);
    gate.resolve();

    // The answer cannot be written: the client is told at once, with a typed error naming the
    // cause, and the run is not given up: its message stays in the durable queue.
    const saveFailed = await waitFor("the SAVE_FAILED event of run-2", () =>
      client.events.find(
        (e) =>
          e.event === "agent" &&
          e.payload?.runId === "run-2" &&
          e.payload?.stream === "error" &&
          e.payload?.data?.code === "SAVE_FAILED",
      ),
    );
    expect(saveFailed.payload.data.message).toMatch(/ENOSPC/);
    expect((await stack.store.queue.pending({})).length).toBe(1);
    // The process is up and still answers, on both protocols.
    expect(await healthz(stack.port)).toBe(200);
    expect((await client.request("health")).ok).toBe(true);

    await disk.free();
    freed.resolve();
    // The retried turn completes once there is room.
    expect((await client.chatEnd("run-2")).payload.state).toBe("final");
    model.push({ kind: "text", chunks: ["third answer"] });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "three",
      idempotencyKey: "run-3",
    });
    expect((await client.chatEnd("run-3")).payload.state).toBe("final");
    // The acknowledged message ran to its end exactly once in the history: the failed
    // attempt's half-written part was cut back, so none of the big answer remains.
    expect(await historyLines(client)).toEqual([
      "user:one",
      "assistant:first answer",
      "user:two",
      "assistant:second answer",
      "user:three",
      "assistant:third answer",
    ]);
    expect(await stack.store.queue.pending({})).toEqual([]);
    await client.close();
    await stack.stop();
    expect(await corruptFiles(storeDir)).toEqual([]);
    const reopened = await withReopenedStore(storeDir, async () => undefined);
    expect(reopened.recoveries).toEqual([]);
  });

  it("a read-only disk (EROFS): the gateway refuses to start with a one-line error and exit code 1, changing nothing; once writable it starts and runs the acknowledged message", async () => {
    const { disk, model, storeDir } = await setup();
    const configDir = await mkdtemp(join(tmpdir(), "beamclaw-faults-config-"));
    cleanups.push(() => rm(configDir, { recursive: true, force: true }));
    const config = await writeGatewayConfig(configDir, { storeDir, modelBaseUrl: model.baseUrl });

    // A message is acknowledged, then the gateway dies before answering it.
    const first = await startGatewayProcess(config);
    const client = await GatewayClient.connect(first.url, PROCESS_TOKEN);
    model.push({ kind: "hang" });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "keep me",
      idempotencyKey: "ro-1",
    });
    await waitFor("the model call", () => model.requests.length === 1);
    expect((await first.kill("SIGKILL")).signal).toBe("SIGKILL");

    await disk.remount({ ro: true });
    const refused = await runGatewayToExit(config);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^beamclaw gateway: .*(EROFS|read-only)/m);
    expect(refused.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(refused.stdout).not.toMatch(/listening/);

    await disk.remount({ ro: false });
    expect(await corruptFiles(storeDir)).toEqual([]);
    model.setDefault({ kind: "text", chunks: ["answered at last"] });
    const second = await startGatewayProcess(config);
    const again = await GatewayClient.connect(second.url, PROCESS_TOKEN);
    await waitFor("the replayed answer", async () =>
      (await historyLines(again)).includes("assistant:answered at last"),
    );
    expect(await historyLines(again)).toEqual(["user:keep me", "assistant:answered at last"]);
    await again.close();
    expect((await second.kill("SIGTERM")).code).toBe(0);
    expect(await corruptFiles(storeDir)).toEqual([]);
  });
});
