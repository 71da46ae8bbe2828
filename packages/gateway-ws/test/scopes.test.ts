import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { coreMethods } from "../src/methods/index.js";
import {
  closeClients,
  protocolScope,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const methods = coreMethods();
const staticScopes = Object.entries(methods).filter(
  (entry): entry is [string, (typeof methods)[string] & { scope: string }] =>
    typeof entry[1].scope === "string",
);

describe("scopes", () => {
  it("requires, for every method with a fixed scope, the scope the protocol's method table names", () => {
    const differences = staticScopes
      .map(([name, def]) => [name, def.scope, protocolScope(name)] as const)
      .filter(
        ([, ours, theirs]) => theirs !== undefined && theirs !== "dynamic" && ours !== theirs,
      );
    expect(differences).toEqual([]);
  });

  it("refuses every operator method to a client without its scope, with FORBIDDEN and the missing scope", async () => {
    const { url } = await startStack();
    const client = await TestClient.connect(url, { token: TOKEN, scopes: [] });
    for (const [name, def] of staticScopes) {
      if (def.scope === "node") continue;
      const error = await rpcError(client.requestUnchecked(name, {}));
      expect([name, error.code, (error.details as { missingScope?: string }).missingScope]).toEqual(
        [name, "FORBIDDEN", def.scope],
      );
    }
    for (const dynamic of ["sessions.delete", "node.invoke"]) {
      expect((await rpcError(client.requestUnchecked(dynamic, {}))).code).toBe("FORBIDDEN");
    }
  });

  it("lets operator.write do what operator.read does, and operator.admin everything", async () => {
    const { url } = await startStack();
    const writer = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.write"] });
    expect((await writer.request("sessions.list", {})).sessions).toEqual([]);
    const refused = await rpcError(writer.request("sessions.reset", { key: "agent:main:main" }));
    expect(refused.details).toMatchObject({ missingScope: "operator.admin" });
    const admin = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.admin"] });
    expect((await admin.request("exec.approval.list", {})).approvals).toEqual([]);
    expect((await admin.request("device.pair.list", {})).pending).toEqual([]);
  });

  it("keeps approvals and pairing separate from write", async () => {
    const { url } = await startStack();
    const writer = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.write"] });
    expect((await rpcError(writer.request("exec.approval.list", {}))).details).toMatchObject({
      missingScope: "operator.approvals",
    });
    expect((await rpcError(writer.request("device.pair.list", {}))).details).toMatchObject({
      missingScope: "operator.pairing",
    });
  });

  it("needs admin to delete an agent's main session, write for any other", async () => {
    const { url } = await startStack();
    const writer = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.write"] });
    expect((await writer.request("sessions.delete", { key: "agent:main:side" })).ok).toBe(true);
    const error = await rpcError(writer.request("sessions.delete", { key: "agent:main:main" }));
    expect(error.details).toMatchObject({ missingScope: "operator.admin" });
  });

  it("keeps node methods to nodes and operator methods to operators", async () => {
    const { url } = await startStack();
    const operator = await TestClient.connect(url, { token: TOKEN });
    const asOperator = await rpcError(
      operator.request("node.invoke.result", { id: "x", nodeId: "y", ok: true }),
    );
    expect(asOperator.details).toMatchObject({ code: "ROLE_NOT_ALLOWED", requiredRole: "node" });
    const node = await TestClient.connect(url, {
      token: TOKEN,
      role: "node",
      scopes: [],
      device: createDeviceIdentity(),
      mode: "node",
    });
    const asNode = await rpcError(node.request("sessions.list", {}));
    expect(asNode.details).toMatchObject({ code: "ROLE_NOT_ALLOWED", requiredRole: "operator" });
  });

  it("withholds chat events from a client without operator.read", async () => {
    const stack = await startStack({ responses: [{ text: "secret" }] });
    const blind = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const sender = await TestClient.connect(stack.url, { token: TOKEN });
    await sender.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "hi",
      idempotencyKey: "k",
    });
    await sender.waitEvent("chat", (p) => p.state === "final");
    expect(blind.events.filter((e) => e.event === "chat" || e.event === "agent")).toEqual([]);
  });
});
