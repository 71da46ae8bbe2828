/**
 * SIGKILL of the standalone gateway mid-turn, then a restart: the real `beamclaw gateway`
 * process on `@beamclaw/store-fs`, a local OpenAI-compatible server streaming slowly, a
 * WebSocket client. The rules: the restarted gateway starts cleanly on the directory the
 * killed one left (its lock broken, torn tails repaired and reported), runs every
 * acknowledged message that had not finished exactly once, in order, even if it is killed
 * again during the replay; the client sees each answer once in the history; no file is
 * corrupt. And a message that takes the whole gateway down on every try is quarantined at
 * the restart after the third (`quarantineAfterCrashes`), instead of crash-looping it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient, waitFor } from "./support/client.js";
import { corruptFiles, withReopenedStore } from "./support/files.js";
import {
  PROCESS_TOKEN,
  startGatewayProcess,
  stopAllGateways,
  writeGatewayConfig,
} from "./support/gateway-process.js";
import { startModelServer } from "./support/model-server.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeAllClients();
  await stopAllGateways();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const A = "agent:main:alpha";
const B = "agent:main:beta";

async function historyLines(client: GatewayClient, key: string): Promise<string[]> {
  const history = await client.request("chat.history", { sessionKey: key });
  return history.messages.map(
    (m: { role: string; content: Array<{ text?: string }> }) =>
      `${m.role}:${m.content.map((c) => c.text ?? "").join("")}`,
  );
}

/** A slow answer: 30 chunks 25 ms apart, so a kill lands mid-stream. */
function slowAnswer(label: string) {
  return {
    kind: "text" as const,
    chunks: Array.from({ length: 30 }, (_, i) => (i === 0 ? `${label}:` : ".")),
    delayMs: 25,
  };
}

describe("gateway killed mid-turn", () => {
  it("SIGKILL mid-turn, and again mid-replay: the restarted gateway runs each acknowledged message exactly once, in order, and no file is corrupt", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-kill-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const model = await startModelServer();
    cleanups.push(() => model.close());
    const storeDir = join(dir, "store");
    const config = await writeGatewayConfig(dir, { storeDir, modelBaseUrl: model.baseUrl });

    // 1. One turn finishes; a second is streaming and a third waits behind it when the
    //    gateway is killed.
    const first = await startGatewayProcess(config);
    const client = await GatewayClient.connect(first.url, PROCESS_TOKEN);
    model.push({ kind: "text", chunks: ["beta done"] });
    await client.request("chat.send", { sessionKey: B, message: "b1", idempotencyKey: "b1" });
    expect((await client.chatEnd("b1")).payload.state).toBe("final");

    model.setDefault(slowAnswer("first try"));
    await client.request("chat.send", { sessionKey: A, message: "a1", idempotencyKey: "a1" });
    await client.request("chat.send", { sessionKey: A, message: "a2", idempotencyKey: "a2" });
    await client.waitEvent("chat", (p) => p.runId === "a1" && p.state === "delta");
    expect((await first.kill("SIGKILL")).signal).toBe("SIGKILL");
    await client.closed;

    // 2. Restarted, it replays a1; killed again while that replay streams.
    model.setDefault(slowAnswer("second try"));
    const requestsBefore = model.requests.length;
    const second = await startGatewayProcess(config);
    await waitFor("the replay to reach the model", () => model.requests.length > requestsBefore);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await second.kill("SIGKILL")).signal).toBe("SIGKILL");

    // 3. Restarted again, it finishes both, once each and in order.
    model.setDefault({ kind: "text", chunks: ["answer ", "after ", "two ", "kills"] });
    const third = await startGatewayProcess(config);
    const again = await GatewayClient.connect(third.url, PROCESS_TOKEN);
    await waitFor("both replays to finish", async () => {
      const lines = await historyLines(again, A);
      return lines.filter((l) => l.startsWith("assistant:")).length >= 2;
    });
    expect(await historyLines(again, A)).toEqual([
      "user:a1",
      "assistant:answer after two kills",
      "user:a2",
      "assistant:answer after two kills",
    ]);
    expect(await historyLines(again, B)).toEqual(["user:b1", "assistant:beta done"]);
    // Nothing left unfinished; a graceful stop exits 0.
    await again.close();
    expect((await third.kill("SIGTERM")).code).toBe(0);

    expect(await corruptFiles(storeDir)).toEqual([]);
    const { value: pending, recoveries } = await withReopenedStore(storeDir, (store) =>
      store.queue.pending({}),
    );
    expect(pending).toEqual([]);
    // The graceful stop left nothing to repair.
    expect(recoveries).toEqual([]);
  });

  it("a message that takes the gateway down on every try is quarantined at the restart after the third; the message behind it runs, nothing is lost or corrupt", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-poison-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const model = await startModelServer();
    cleanups.push(() => model.close());
    const storeDir = join(dir, "store");
    const config = await writeGatewayConfig(dir, { storeDir, modelBaseUrl: model.baseUrl });
    const poisonTries = () =>
      model.requests.filter((r) => JSON.stringify(r.body.messages.at(-1)).includes("poison"))
        .length;

    // Every run of "poison" is in flight at the model when its gateway dies (the model never
    // answers it; the SIGKILL stands for whatever in that turn kills the process).
    model.setDefault({ kind: "hang" });
    const first = await startGatewayProcess(config);
    const client = await GatewayClient.connect(first.url, PROCESS_TOKEN);
    await client.request("chat.send", { sessionKey: A, message: "poison", idempotencyKey: "p1" });
    await client.request("chat.send", { sessionKey: A, message: "next", idempotencyKey: "n1" });
    await waitFor("try 1 to reach the model", () => poisonTries() === 1);
    expect((await first.kill("SIGKILL")).signal).toBe("SIGKILL");
    await client.closed;
    for (const tryNumber of [2, 3]) {
      const again = await startGatewayProcess(config);
      await waitFor(`try ${tryNumber} to reach the model`, () => poisonTries() === tryNumber);
      expect((await again.kill("SIGKILL")).signal).toBe("SIGKILL");
    }

    // The fourth gateway sets it aside instead of dying a fourth time, and answers "next".
    model.setDefault({ kind: "text", chunks: ["next ", "answered"] });
    const fourth = await startGatewayProcess(config);
    const watcher = await GatewayClient.connect(fourth.url, PROCESS_TOKEN);
    await waitFor("the message behind it to be answered", async () => {
      const lines = await historyLines(watcher, A);
      return lines.includes("assistant:next answered");
    });
    expect(poisonTries()).toBe(3);
    // The three cut-short tries were discarded: the history holds only the answered turn.
    expect(await historyLines(watcher, A)).toEqual(["user:next", "assistant:next answered"]);
    await watcher.close();
    expect((await fourth.kill("SIGTERM")).code).toBe(0);

    // Kept in the store (nothing lost), off the queue; no file is corrupt.
    expect(await corruptFiles(storeDir)).toEqual([]);
    const { value } = await withReopenedStore(storeDir, async (store) => {
      const keys = await store.kv.keys("beamclaw:quarantine:");
      return {
        pending: await store.queue.pending({}),
        records: await Promise.all(keys.map((key) => store.kv.get(key))),
      };
    });
    expect(value.pending).toEqual([]);
    expect(value.records).toEqual([
      expect.objectContaining({
        sessionKey: A,
        idempotencyKey: expect.stringContaining("p1"),
        crashes: 3,
        payload: expect.objectContaining({ input: expect.objectContaining({ text: "poison" }) }),
      }),
    ]);
  });
});
