/**
 * Gateway methods of channel plugins (`ChannelPlugin.gatewayMethods`), mounted by the gateway
 * from `ChannelManager.gatewayMethods()` and called over a real socket: listed in
 * `hello-ok.features.methods`, behind their scope, params checked by their schema, a throwing
 * plugin answered with a protocol error on a connection that stays open, and names the
 * gateway has built in refused.
 */
import {
  AlreadyRegisteredError,
  ChannelManager,
  type ChannelPlugin,
  InvalidArgumentError,
} from "@beamclaw/core";
import { createMemoryPlatform, type MemoryPlatform } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createGateway } from "../src/index.js";
import {
  closeClients,
  RpcError,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
  type Wire,
} from "./support.js";

useSchemaCheck();

const managers: ChannelManager[] = [];
const platforms: MemoryPlatform[] = [];

afterEach(async () => {
  await closeClients();
  for (const manager of managers.splice(0)) await manager.stop();
  await stopStacks();
  for (const platform of platforms.splice(0)) await platform.close();
});

const seen: Array<{ params: unknown; scopes: readonly string[]; clientId?: string }> = [];

/** The memory platform's plugin with methods of its own. */
function pluginWithMethods(id = "memory"): ChannelPlugin {
  const platform = createMemoryPlatform({ channelId: id });
  platforms.push(platform);
  return {
    ...platform.createChannel(),
    gatewayMethods: {
      echo: {
        description: "Says back what it got.",
        scope: "operator.read",
        params: z.object({ text: z.string().min(1), times: z.number().int().min(1).default(1) }),
        handler: (params, caller) => {
          seen.push({ params, scopes: caller.scopes, clientId: caller.clientId });
          const p = params as { text: string; times: number };
          return { echo: p.text.repeat(p.times) };
        },
      },
      reset: {
        // No scope: operator.admin.
        handler: () => ({ reset: true }),
      },
      crash: {
        scope: "operator.read",
        handler: () => {
          throw new TypeError("Cannot read properties of undefined (reading 'x')");
        },
      },
      refuse: {
        scope: "operator.read",
        handler: async () => {
          throw new InvalidArgumentError("chatId must be a string");
        },
      },
      bigint: {
        scope: "operator.read",
        handler: () => ({ n: 10n }) as never,
      },
    },
  };
}

async function stackWith(plugin: ChannelPlugin) {
  const stack = await startStack();
  const manager = new ChannelManager({
    runtime: stack.runtime,
    channels: [{ plugin, dmPolicy: "open" }],
  });
  managers.push(manager);
  await manager.start();
  return { stack, manager };
}

describe("channel plugin methods on the gateway", () => {
  it("are listed in hello-ok and answered over the socket, params checked by their schema", async () => {
    const stack = await startStack();
    const manager = new ChannelManager({
      runtime: stack.runtime,
      channels: [{ plugin: pluginWithMethods(), dmPolicy: "open" }],
    });
    managers.push(manager);
    await manager.start();
    await stack.gateway.stop();
    // A gateway created with the manager's methods.
    const gateway = createGateway({
      runtime: stack.runtime,
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      channelMethods: manager.gatewayMethods(),
    });
    const { port } = await gateway.start();
    try {
      const client = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
      expect(client.hello.features.methods).toEqual(
        expect.arrayContaining([
          "memory.echo",
          "memory.reset",
          "channels.status",
          "channels.pairing.approve",
          "chat.send",
        ]),
      );
      seen.length = 0;
      expect(await client.request("memory.echo", { text: "ab", times: 2 })).toEqual({
        echo: "abab",
      });
      // The schema's output (its default filled in) is what the handler got.
      expect(await client.request("memory.echo", { text: "x" })).toEqual({ echo: "x" });
      expect(seen[1]!.params).toEqual({ text: "x", times: 1 });
      expect(seen[0]!.clientId).toBe("test");
      expect(seen[0]!.scopes).toContain("operator.read");

      const invalid = await rpcError(client.request("memory.echo", { text: "", times: "2" }));
      expect(invalid.code).toBe("INVALID_REQUEST");
      expect(invalid.message).toMatch(/^invalid memory\.echo params: /);
      const issues = (invalid.details as { code: string; issues: Array<{ path: string[] }> })
        .issues;
      expect((invalid.details as { code: string }).code).toBe("INVALID_PARAMS");
      expect(issues.map((i) => i.path.join("."))).toEqual(["text", "times"]);
      expect(seen).toHaveLength(2);

      // channels.status answers in the shape of OpenClaw's protocol.
      const status = await client.request("channels.status");
      const validate = validatorOf("ChannelsStatusResult");
      expect(validate(status), JSON.stringify(validate.errors)).toBe(true);
      expect(status).toMatchObject({
        channelOrder: ["memory"],
        channelLabels: { memory: "Memory" },
        channels: { memory: { state: "connected" } },
        channelAccounts: { memory: [{ accountId: "default", connected: true }] },
      });
    } finally {
      await gateway.stop();
    }
  });

  it("enforce each method's scope", async () => {
    const { stack } = await stackWith(pluginWithMethods());
    const gateway = createGateway({
      runtime: stack.runtime,
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      channelMethods: () => managers[0]!.gatewayMethods(),
    });
    const { port } = await gateway.start();
    try {
      const reader = await TestClient.connect(`ws://127.0.0.1:${port}`, {
        token: TOKEN,
        scopes: ["operator.read"],
      });
      expect(await reader.request("memory.echo", { text: "ok" })).toEqual({ echo: "ok" });
      const forbidden = await rpcError(reader.request("memory.reset"));
      expect(forbidden.code).toBe("FORBIDDEN");
      const pairing = await rpcError(
        reader.request("channels.pairing.approve", {
          channel: "memory",
          accountId: "default",
          requestId: "ABCDEFGH",
        }),
      );
      expect(pairing.code).toBe("FORBIDDEN");

      const admin = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
      expect(await admin.request("memory.reset")).toEqual({ reset: true });
    } finally {
      await gateway.stop();
    }
  });

  it("answer a throwing plugin with a protocol error and keep the connection open", async () => {
    const { stack, manager } = await stackWith(pluginWithMethods());
    const gateway = createGateway({
      runtime: stack.runtime,
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      channelMethods: () => manager.gatewayMethods(),
    });
    const { port } = await gateway.start();
    try {
      const client = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
      const crash = await rpcError(client.request("memory.crash"));
      expect(crash.code).toBe("UNAVAILABLE");
      expect(crash.message).toContain("Cannot read properties of undefined");
      const refused = await rpcError(client.request("memory.refuse"));
      expect(refused.code).toBe("INVALID_REQUEST");
      expect(refused.message).toBe("chatId must be a string");
      const bigint = await rpcError(client.request("memory.bigint"));
      expect(bigint.code).toBe("UNAVAILABLE");
      expect(bigint.details).toEqual({ code: "INVALID_RESULT" });
      // Still open, still answering.
      expect(await client.request("memory.echo", { text: "alive" })).toEqual({ echo: "alive" });
      expect(client.ws.readyState).toBe(client.ws.OPEN);

      // A method whose channel went away says so.
      await manager.remove("memory");
      const gone = await rpcError(client.request("memory.echo", { text: "x" }));
      expect(gone.code).toBe("UNAVAILABLE");
      expect(gone.message).toMatch(/its channel is gone/);
      expect(await client.request("channels.status")).toMatchObject({ channelOrder: [] });
    } finally {
      await gateway.stop();
    }
  });

  it("refuses a channel method named like a built-in one", async () => {
    const stack = await startStack();
    const platform = createMemoryPlatform({ channelId: "chat" });
    platforms.push(platform);
    const plugin: ChannelPlugin = {
      ...platform.createChannel(),
      gatewayMethods: { send: { handler: () => ({ hijacked: true }) } },
    };
    const manager = new ChannelManager({ runtime: stack.runtime, channels: [{ plugin }] });
    let error: unknown;
    try {
      createGateway({
        runtime: stack.runtime,
        port: 0,
        auth: { mode: "token", token: TOKEN },
        channelMethods: manager.gatewayMethods(),
      });
    } catch (e) {
      error = e;
    }
    expect(AlreadyRegisteredError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain('"chat.send"');
    // The running gateway's own chat.send is untouched.
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(client.hello.features.methods).not.toContain("chat.hijacked");
  });
});

/** Checks a value against a definition of the protocol schema. */
function expectSchema(definition: string, value: unknown): void {
  const validate = validatorOf(definition);
  expect(validate(value), `${definition}: ${JSON.stringify(validate.errors)}`).toBe(true);
}

/** A `channels.pairing.*` call whose params and result are checked against the protocol. */
async function pairingCall(client: TestClient, name: string, params: object): Promise<Wire> {
  const stem = name.charAt(0).toUpperCase() + name.slice(1);
  expectSchema(`ChannelsPairing${stem}Params`, params);
  const result = await client.request(`channels.pairing.${name}`, params);
  expectSchema(`ChannelsPairing${stem}Result`, result);
  return result;
}

describe("channels.pairing.* on the gateway (OpenClaw's protocol)", () => {
  async function pairingStack() {
    const stack = await startStack();
    const platform = createMemoryPlatform({ channelId: "memory" });
    platforms.push(platform);
    const manager = new ChannelManager({
      runtime: stack.runtime,
      channels: [{ plugin: platform.createChannel(), dmPolicy: "pairing", operators: ["olga"] }],
      pairing: { ttlMs: 600_000, maxPending: 3 },
    });
    managers.push(manager);
    await manager.start();
    const gateway = createGateway({
      runtime: stack.runtime,
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      channelMethods: () => manager.gatewayMethods(),
    });
    const { port } = await gateway.start();
    const client = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
    const dm = (peer: string, messageId: string) =>
      platform.inject({
        chatType: "direct",
        chatId: peer,
        peer: { id: peer, name: peer === "bob" ? "Bob" : undefined },
        text: "hello?",
        messageId,
      });
    return { stack, platform, manager, gateway, client, dm };
  }

  it("lists, approves (allowlisting the sender) and dismisses requests in the protocol's shapes", async () => {
    const { platform, gateway, client, dm } = await pairingStack();
    try {
      expect(client.hello.features.methods).toEqual(
        expect.arrayContaining([
          "channels.pairing.list",
          "channels.pairing.approve",
          "channels.pairing.dismiss",
        ]),
      );
      expect(client.hello.features.methods).not.toContain("channels.pairing.reject");

      const empty = await pairingCall(client, "list", {});
      expect(empty).toEqual({
        accounts: [
          {
            channel: "memory",
            channelLabel: "Memory",
            accountId: "default",
            notifySupported: true,
          },
        ],
        requests: [],
        commandOwnerConfigured: true,
        limits: { pendingPerAccount: 3, ttlMs: 600_000 },
      });

      expect((await dm("bob", "b1")).status).toBe("pairing");
      // Carol asks a moment later: requests of the same millisecond are listed by code.
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect((await dm("carol", "c1")).status).toBe("pairing");
      // Bob writes again: the same request, seen later.
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect((await dm("bob", "b2")).status).toBe("pairing");

      const listed = await pairingCall(client, "list", { channel: "memory", accountId: "default" });
      expect(listed.requests).toHaveLength(2);
      const [bob, carol] = listed.requests as Wire[];
      expect(bob).toMatchObject({
        channel: "memory",
        channelLabel: "Memory",
        accountId: "default",
        senderId: "bob",
        senderLabel: "Bob",
        metadata: { chatId: "bob" },
        notifySupported: true,
      });
      expect(bob.requestId).toMatch(/^[A-HJ-NP-Z2-9]{8}$/);
      expect(Date.parse(bob.lastSeenAt)).toBeGreaterThan(Date.parse(bob.createdAt));
      expect(Date.parse(bob.expiresAt) - Date.parse(bob.createdAt)).toBe(600_000);
      // The code the sender was told is the request's id.
      await expect
        .poll(() =>
          platform
            .outbound()
            .some(
              (o) =>
                o.kind === "text" && o.target.chatId === "bob" && o.text.includes(bob.requestId),
            ),
        )
        .toBe(true);
      expect(carol).toMatchObject({ senderId: "carol", senderLabel: "carol" });

      // Another account's filter sees nothing of these.
      const other = await pairingCall(client, "list", { accountId: "work" });
      expect(other).toMatchObject({ accounts: [], requests: [] });

      const approved = await pairingCall(client, "approve", {
        channel: "memory",
        accountId: "default",
        requestId: bob.requestId,
        bootstrapCommandOwner: true,
      });
      expect(approved).toEqual({
        requestId: bob.requestId,
        senderId: "bob",
        notification: "sent",
        commandOwnerBootstrap: "already-configured",
      });
      // Bob is on the allowlist now, and was told.
      expect((await dm("bob", "b3")).status).toBe("accepted");
      await expect
        .poll(() =>
          platform
            .outbound()
            .filter((o) => o.kind === "text" && o.target.chatId === "bob")
            .map((o) => (o.kind === "text" ? o.text : "")),
        )
        .toEqual(expect.arrayContaining([expect.stringMatching(/approved/i)]));

      const dismissed = await pairingCall(client, "dismiss", {
        channel: "memory",
        accountId: "default",
        requestId: carol.requestId,
      });
      expect(dismissed).toEqual({ requestId: carol.requestId, senderId: "carol" });
      expect((await pairingCall(client, "list", {})).requests).toEqual([]);
      // Dismissed is not approved: Carol gets a new code when she writes again.
      expect((await dm("carol", "c2")).status).toBe("pairing");
      const again = (await pairingCall(client, "list", {})).requests as Wire[];
      expect(again.map((r: Wire) => r.senderId)).toEqual(["carol"]);
      expect(again[0].requestId).not.toBe(carol.requestId);

      // Approving without notifying says so.
      const quiet = await pairingCall(client, "approve", {
        channel: "memory",
        accountId: "default",
        requestId: again[0].requestId,
        notify: false,
      });
      expect(quiet).toMatchObject({ senderId: "carol", notification: "not-requested" });
    } finally {
      await gateway.stop();
    }
  });

  it("answers an unknown, dismissed or other account's requestId and bad params with typed errors", async () => {
    const { gateway, client, dm } = await pairingStack();
    try {
      await dm("bob", "b1");
      const [bob] = (await pairingCall(client, "list", {})).requests as Wire[];

      const unknown = await rpcError(
        client.request("channels.pairing.approve", {
          channel: "memory",
          accountId: "default",
          requestId: "ZZZZZZZZ",
        }),
      );
      expect(unknown).toBeInstanceOf(RpcError);
      expect(unknown.code).toBe("INVALID_REQUEST");
      expect(unknown.details).toEqual({
        code: "PAIRING_CODE_INVALID",
        channel: "memory",
        requestId: "ZZZZZZZZ",
      });

      // Bob's request came to the default account, not to "work": unknown there, untouched.
      const wrongAccount = await rpcError(
        client.request("channels.pairing.approve", {
          channel: "memory",
          accountId: "work",
          requestId: bob.requestId,
        }),
      );
      expect(wrongAccount.details).toMatchObject({ code: "PAIRING_CODE_INVALID" });
      expect((await pairingCall(client, "list", {})).requests).toHaveLength(1);

      await pairingCall(client, "dismiss", {
        channel: "memory",
        accountId: "default",
        requestId: bob.requestId,
      });
      for (const name of ["dismiss", "approve"]) {
        const gone = await rpcError(
          client.request(`channels.pairing.${name}`, {
            channel: "memory",
            accountId: "default",
            requestId: bob.requestId,
          }),
        );
        expect(gone.code).toBe("INVALID_REQUEST");
        expect(gone.details).toMatchObject({ code: "PAIRING_CODE_INVALID" });
      }
      // The dismissed sender was not approved.
      expect((await dm("bob", "b2")).status).toBe("pairing");

      const noChannel = await rpcError(
        client.request("channels.pairing.dismiss", {
          channel: "nowhere",
          accountId: "default",
          requestId: bob.requestId,
        }),
      );
      expect(noChannel.code).toBe("INVALID_REQUEST");
      expect(noChannel.details).toEqual({ code: "CHANNEL_NOT_FOUND", channel: "nowhere" });

      // Params the protocol's schema refuses are refused here too: the old shape, a missing
      // accountId, an empty requestId.
      for (const params of [
        { channel: "memory", code: "ABCDEFGH" },
        { channel: "memory", requestId: "ABCDEFGH" },
        { channel: "memory", accountId: "default", requestId: "" },
        { channel: "memory", accountId: "default", requestId: "ABCDEFGH", notify: "yes" },
      ]) {
        expect(validatorOf("ChannelsPairingApproveParams")(params)).toBe(false);
        const refused = await rpcError(client.requestUnchecked("channels.pairing.approve", params));
        expect(refused.code).toBe("INVALID_REQUEST");
        expect((refused.details as { code: string }).code).toBe("INVALID_PARAMS");
      }
      const oldMethod = await rpcError(
        client.requestUnchecked("channels.pairing.reject", { channel: "memory", code: "X" }),
      );
      expect(oldMethod.code).toBe("INVALID_REQUEST");
      expect(client.ws.readyState).toBe(client.ws.OPEN);
    } finally {
      await gateway.stop();
    }
  });
});
