/**
 * The `heartbeat` section of `beamclaw.yaml` as the CLI's own bootstrap (`startFromConfig`)
 * reads it from a file on disk: `heartbeatFile` (a `HEARTBEAT.md` relative to the config
 * file) reaches the model's prompt on a beat, and the deprecated `presenceIntervalMs` /
 * `missedBeatsOffline` set the gateway's liveness unless `gateway.presence` says otherwise.
 * The model is a scripted OpenAI-compatible server on 127.0.0.1.
 */
import { realpathSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { closeClients, TestClient, useSchemaCheck, waitFor } from "./support.js";
import { type ChatBody, closeModelServers, modelServer } from "./tools-support.js";

useSchemaCheck();

const TOKEN = "heartbeat-config-token-0123456789";
const started: StartedGateway[] = [];
const dirs: string[] = [];

const hungServers: Server[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of started.splice(0)) await gateway.stop();
  await closeModelServers();
  for (const server of hungServers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A config directory (not the working directory) with `beamclaw.yaml` and `extra` files. */
async function configDir(
  baseUrl: string,
  sections: { gateway?: string; heartbeat?: string },
  files: Record<string, string> = {},
): Promise<string> {
  const dir = realpathSync(await mkdtemp(join(tmpdir(), "bc-hb-config-")));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  await writeFile(
    join(dir, "beamclaw.yaml"),
    [
      `gateway: { host: 127.0.0.1, auth: { mode: token, token: ${TOKEN} }${sections.gateway ?? ""} }`,
      "store: { kind: memory }",
      `providers: { local: { kind: openai-compatible, baseUrl: "${baseUrl}", apiKey: none } }`,
      "agents: { main: { model: local/m } }",
      ...(sections.heartbeat === undefined ? [] : [`heartbeat: ${sections.heartbeat}`]),
      "",
    ].join("\n"),
  );
  return dir;
}

async function start(dir: string): Promise<{ gateway: StartedGateway; client: TestClient }> {
  const gateway = await startFromConfig({
    configPath: join(dir, "beamclaw.yaml"),
    env: {},
    port: 0,
  });
  started.push(gateway);
  const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
    token: TOKEN,
    scopes: ["operator.admin"],
  });
  return { gateway, client };
}

function lastUserText(body: ChatBody): string {
  return body.messages.findLast((m) => m.role === "user")?.content ?? "";
}

describe("heartbeat.heartbeatFile", () => {
  it("appends the HEARTBEAT.md next to the config file to the prompt of a beat", async () => {
    const model = await modelServer(() => ({ text: "HEARTBEAT_OK" }));
    const dir = await configDir(
      model.baseUrl,
      { heartbeat: "{ enabled: true, everyMs: 3600000, heartbeatFile: ./HEARTBEAT.md }" },
      { "HEARTBEAT.md": "# Checklist\n- check that the nightly backup ran\n" },
    );
    // The test runs elsewhere: the path is the config file's, not the working directory's.
    expect(process.cwd()).not.toBe(dir);
    const { client } = await start(dir);
    await client.request("wake", { mode: "now", text: "look around" });
    const body = await waitFor("the beat's model request", () => model.bodies[0], 10_000);
    const prompt = lastUserText(body);
    expect(prompt).toContain("HEARTBEAT.md:\n# Checklist\n- check that the nightly backup ran");
    expect(prompt).toContain("- look around");
    const beat = await client.waitEvent("heartbeat", () => true, 10_000);
    expect(beat.payload.status).toBe("ok-token");
  });

  it("reads the file at each beat: an edit counts from the next beat", async () => {
    const model = await modelServer(() => ({ text: "HEARTBEAT_OK" }));
    const dir = await configDir(
      model.baseUrl,
      { heartbeat: "{ heartbeatFile: HEARTBEAT.md }" },
      { "HEARTBEAT.md": "- first item\n" },
    );
    const { client } = await start(dir);
    await client.request("wake", { mode: "now", text: "one" });
    await waitFor("the first beat", () => model.bodies[0], 10_000);
    await client.waitEvent("heartbeat", () => true, 10_000);
    await writeFile(join(dir, "HEARTBEAT.md"), "- second item\n");
    await client.request("wake", { mode: "now", text: "two" });
    const second = await waitFor("the second beat", () => model.bodies[1], 10_000);
    expect(lastUserText(model.bodies[0]!)).toContain("HEARTBEAT.md:\n- first item");
    expect(lastUserText(second)).toContain("HEARTBEAT.md:\n- second item");
    expect(lastUserText(second)).not.toContain("first item");
  });
});

describe("heartbeat.presenceIntervalMs and heartbeat.missedBeatsOffline (deprecated aliases)", () => {
  async function presenceOf(sections: { gateway?: string; heartbeat?: string }) {
    const model = await modelServer(() => ({ text: "unused" }));
    const { client } = await start(await configDir(model.baseUrl, sections));
    const status = await client.request("status");
    return status.presence as { intervalMs: number; missedBeatsOffline: number } | undefined;
  }

  it("set the liveness interval and limit when gateway.presence does not", async () => {
    expect(
      await presenceOf({ heartbeat: "{ presenceIntervalMs: 250, missedBeatsOffline: 4 }" }),
    ).toMatchObject({ intervalMs: 250, missedBeatsOffline: 4 });
  });

  it("yield to gateway.presence, value by value", async () => {
    expect(
      await presenceOf({
        gateway: ", presence: { intervalMs: 700 }",
        heartbeat: "{ presenceIntervalMs: 250, missedBeatsOffline: 4 }",
      }),
    ).toMatchObject({ intervalMs: 700, missedBeatsOffline: 4 });
    expect(
      await presenceOf({
        gateway: ", presence: { intervalMs: 700, missedBeatsOffline: 6 }",
        heartbeat: "{ presenceIntervalMs: 250, missedBeatsOffline: 4 }",
      }),
    ).toMatchObject({ intervalMs: 700, missedBeatsOffline: 6 });
  });

  it("do not turn liveness back on when gateway.presence is false", async () => {
    expect(
      await presenceOf({
        gateway: ", presence: false",
        heartbeat: "{ presenceIntervalMs: 250, missedBeatsOffline: 4 }",
      }),
    ).toBeUndefined();
  });

  it("leave the defaults (30 s, 3 beats) when neither is set", async () => {
    expect(await presenceOf({})).toMatchObject({ intervalMs: 30_000, missedBeatsOffline: 3 });
  });

  it("a frozen client is dropped after the aliases' missed beats", async () => {
    const model = await modelServer(() => ({ text: "unused" }));
    const { gateway } = await start(
      await configDir(model.baseUrl, {
        heartbeat: "{ presenceIntervalMs: 100, missedBeatsOffline: 2 }",
      }),
    );
    const frozen = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
      scopes: ["operator.read"],
    });
    const frozenId = frozen.hello.server.connId as string;
    expect(gateway.gateway.connections().map((c) => c.connId)).toContain(frozenId);
    // Stops reading its socket: no pongs, no frames.
    frozen.ws.pause();
    await waitFor(
      "the frozen connection to be closed",
      () => !gateway.gateway.connections().some((c) => c.connId === frozenId),
      10_000,
    );
    expect(gateway.gateway.log.tail({}).lines.join("\n")).toMatch(
      new RegExp(`conn=${frozenId} missed 2 beats .*every 100 ms\\): offline, closing`),
    );
  });
});

/** An OpenAI-compatible endpoint that takes each request and never answers it. */
async function hungModelServer(): Promise<{ baseUrl: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req) => {
    requests.push(req);
    req.resume();
  });
  hungServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
  };
}

describe("heartbeat.turnTimeoutMs", () => {
  it("bounds a beat's turn: a model that never answers ends in a failed beat", async () => {
    const model = await hungModelServer();
    const dir = await configDir(model.baseUrl, { heartbeat: "{ turnTimeoutMs: 300 }" });
    const { client } = await start(dir);
    await client.request("wake", { mode: "now", text: "look around" });
    await waitFor("the beat's model request", () => model.requests[0], 10_000);
    // Without the limit the beat would wait for the model for ever.
    const beat = await client.waitEvent("heartbeat", () => true, 10_000);
    expect(beat.payload).toMatchObject({
      status: "failed",
      reason: "the heartbeat turn took longer than 300 ms",
    });
  });
});
