/**
 * The store's disk goes read-only while the gateway is running turns. The real `beamclaw
 * gateway` process keeps `@beamclaw/store-fs` on a small ext4 file system mounted with
 * `errors=remount-ro`; mid-run, ext4 meets an error and remounts itself read-only, open files
 * included (`support/ext4.ts`; a plain `mount -o remount,ro` is refused with `EBUSY` while the
 * store has its logs open, which it always has). The model is a local OpenAI-compatible server.
 *
 * The rules: the process stays up and says what failed with a typed error (each turn in flight
 * reports `SAVE_FAILED` naming `EROFS` and that it will run again: it stays acknowledged; new
 * messages are refused with a retryable `STORE_UNAVAILABLE`, never acknowledged and then
 * dropped); it stops cleanly when told to. The store stops after a failed write (a retry could
 * report success for data the kernel dropped), and ext4 stays read-only after an error until
 * it is unmounted, so recovery is a repair and a restart, as on a server: once the disk is
 * writable again, no file is corrupt, the restarted gateway runs every message it had
 * acknowledged, exactly once, and a new turn completes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient, rpcError, waitFor } from "./support/client.js";
import { type Ext4Disk, mountExt4Disk } from "./support/ext4.js";
import { corruptFiles, withReopenedStore } from "./support/files.js";
import {
  PROCESS_TOKEN,
  startGatewayProcess,
  stopAllGateways,
  writeGatewayConfig,
} from "./support/gateway-process.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeAllClients();
  await stopAllGateways();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = "agent:main:main";
const OTHER = "agent:main:other";

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

/** A session's history as `role:text` lines. */
async function historyLines(client: GatewayClient, sessionKey: string): Promise<string[]> {
  const history = await client.request("chat.history", { sessionKey });
  return history.messages.map(
    (m: { role: string; content: Array<{ text?: string }> }) =>
      `${m.role}:${m.content.map((c) => c.text ?? "").join("")}`,
  );
}

async function setup(): Promise<{ disk: Ext4Disk; model: ModelServer; config: string }> {
  const disk = await mountExt4Disk(32 * 1024 * 1024);
  cleanups.push(() => disk.unmount());
  const model = await startModelServer();
  cleanups.push(() => model.close());
  const configDir = await mkdtemp(join(tmpdir(), "beamclaw-faults-config-"));
  cleanups.push(() => rm(configDir, { recursive: true, force: true }));
  const config = await writeGatewayConfig(configDir, {
    storeDir: join(disk.dir, "store"),
    modelBaseUrl: model.baseUrl,
  });
  return { disk, model, config };
}

describe("read-only remount mid-run", () => {
  it("the disk turns read-only under running turns: the gateway stays up, turns in flight report a typed EROFS save failure and stay acknowledged, new messages are refused; after the repair and a restart nothing is corrupt and every acknowledged message runs once", async () => {
    const { disk, model, config } = await setup();
    const storeDir = join(disk.dir, "store");
    const gateway = await startGatewayProcess(config);
    const client = await GatewayClient.connect(gateway.url, PROCESS_TOKEN);

    // A turn completes before the fault: it must survive it.
    model.push({ kind: "text", chunks: ["first answer"] });
    await client.request("chat.send", { sessionKey: KEY, message: "one", idempotencyKey: "ro-1" });
    expect((await client.chatEnd("ro-1")).payload.state).toBe("final");

    // Two turns are acknowledged and waiting for the model when the disk goes read-only.
    const gate = deferred();
    model.push({ kind: "gated", until: gate.promise, next: { kind: "text", chunks: ["lost"] } });
    model.push({ kind: "gated", until: gate.promise, next: { kind: "text", chunks: ["lost"] } });
    for (const [sessionKey, message, idempotencyKey] of [
      [KEY, "two", "ro-2"],
      [OTHER, "elsewhere", "ro-3"],
    ] as const) {
      const ack = await client.request("chat.send", { sessionKey, message, idempotencyKey });
      expect(ack).toEqual({ runId: idempotencyKey, status: "started" });
    }
    await waitFor("both model calls", () => model.requests.length === 3);
    await disk.failReadOnly();
    expect(await disk.readOnly()).toBe(true);
    gate.resolve();

    // The answers cannot be written: each client is told why, with a typed error naming the
    // cause. The runtime reports a failed save as `SAVE_FAILED` on the run's stream and runs
    // the message again later (it stays acknowledged); a run that ends instead carries the
    // store's error as its chat error.
    for (const runId of ["ro-2", "ro-3"]) {
      const failed = await client.waitEvent(
        "agent",
        (p) => p.runId === runId && p.stream === "error",
        15_000,
      );
      expect(failed.payload.data.code, runId).toBe("SAVE_FAILED");
      expect(failed.payload.data.message, runId).toMatch(/store-fs at .*EROFS/);
      const ended = client.events.find(
        (e) => e.event === "chat" && e.payload.runId === runId && e.payload.state !== "delta",
      );
      if (ended !== undefined) {
        expect(ended.payload.state, runId).toBe("error");
        expect(ended.payload.errorMessage, runId).toMatch(/store-fs at .*EROFS/);
      }
    }
    // Nothing of the answers that could not be written was ever reported as final.
    expect(
      client.events.filter((e) => e.event === "chat" && e.payload.state === "final").length,
    ).toBe(1);
    // The process is up and answers on both protocols.
    expect(await healthz(gateway.port)).toBe(200);
    // The health method tells the truth: the store is unavailable (typed, retryable).
    const health = await rpcError(client.request("health"));
    expect(health.code).toBe("UNAVAILABLE");
    expect(health.details?.code).toBe("STORE_UNAVAILABLE");
    expect(health.retryable).toBe(true);
    // A new message is refused before it is acknowledged: typed, retryable, nothing accepted.
    const refused = await rpcError(
      client.request("chat.send", { sessionKey: KEY, message: "three", idempotencyKey: "ro-4" }),
    );
    expect(refused.code).toBe("UNAVAILABLE");
    expect(refused.retryable).toBe(true);
    expect(refused.message).toMatch(/store-fs/);

    // Told to stop, it stops cleanly, having logged what failed as messages, not stack traces.
    await client.close();
    expect(await gateway.kill("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(gateway.stderr()).toMatch(/warn chat\.send failed: store-fs at .*EROFS/);
    expect(gateway.stderr()).not.toMatch(/\n\s+at /);

    // The disk is repaired (unmounted, checked, mounted writable again).
    expect(await disk.repair()).toBeLessThanOrEqual(1);
    expect(await disk.readOnly()).toBe(false);
    expect(await corruptFiles(storeDir)).toEqual([]);

    // The restarted gateway runs the two acknowledged messages and takes new ones.
    model.setDefault({ kind: "text", chunks: ["answered after the repair"] });
    const second = await startGatewayProcess(config);
    const again = await GatewayClient.connect(second.url, PROCESS_TOKEN);
    await waitFor("the replayed answers", async () => {
      const [main, other] = await Promise.all([
        historyLines(again, KEY),
        historyLines(again, OTHER),
      ]);
      return (
        main.includes("assistant:answered after the repair") &&
        other.includes("assistant:answered after the repair")
      );
    });
    await again.request("chat.send", { sessionKey: KEY, message: "four", idempotencyKey: "ro-5" });
    expect((await again.chatEnd("ro-5")).payload.state).toBe("final");
    expect(await historyLines(again, KEY)).toEqual([
      "user:one",
      "assistant:first answer",
      "user:two",
      "assistant:answered after the repair",
      "user:four",
      "assistant:answered after the repair",
    ]);
    expect(await historyLines(again, OTHER)).toEqual([
      "user:elsewhere",
      "assistant:answered after the repair",
    ]);
    await again.close();
    expect((await second.kill("SIGTERM")).code).toBe(0);

    // Nothing left over: no file corrupt, nothing pending, nothing to repair.
    expect(await corruptFiles(storeDir)).toEqual([]);
    const reopened = await withReopenedStore(storeDir, (store) => store.queue.pending({}));
    expect(reopened.value).toEqual([]);
    expect(reopened.recoveries).toEqual([]);
  });
});
