/**
 * The `connect` params' fields: every field OpenClaw's `ConnectParams` defines (and its nested
 * objects' fields) is accepted, as a real OpenClaw node or app sends them, and a top-level
 * field the protocol does not have is refused like any method's unknown field
 * (`INVALID_PARAMS`, each named, with a did-you-mean).
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, signDeviceChallenge } from "../src/auth/device-identity.js";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

interface Definition {
  properties?: Record<string, Definition>;
}
/** The protocol's `ConnectParams` definition (the schema its validator was compiled from). */
const connectDefinition = validatorOf("ConnectParams").schema as Definition;

/** Every property path of a definition, nested objects' included (`client.buildId`). */
function propertyPaths(definition: Definition, prefix = ""): string[] {
  return Object.entries(definition.properties ?? {}).flatMap(([name, child]) => [
    `${prefix}${name}`,
    ...propertyPaths(child, `${prefix}${name}.`),
  ]);
}

/** The value at a property path (`client.buildId`) of params. */
function valueAt(params: Record<string, unknown>, path: string): unknown {
  return path
    .split(".")
    .reduce<unknown>(
      (value, name) => (value as Record<string, unknown> | undefined)?.[name],
      params,
    );
}

/** A node's `connect` carrying every field of the protocol's `ConnectParams`, signed. */
function fullNodeConnect(nonce: string): Record<string, unknown> {
  const identity = createDeviceIdentity();
  const client = {
    id: "node-host",
    displayName: "Build box",
    version: "2026.9.1",
    buildId: "b-7f3a",
    platform: "linux",
    deviceFamily: "server",
    modelIdentifier: "x86_64",
    timeZone: "Europe/Berlin",
    mode: "node",
    instanceId: "inst-1",
  };
  return {
    minProtocol: 3,
    maxProtocol: 4,
    client,
    caps: ["exec"],
    commands: ["system.run"],
    computerUse: { version: 1, displays: [] },
    workerRuns: {
      bundleHash: "a".repeat(64),
      openclawVersion: "2026.9.1",
      protocolFeatures: ["worker-runs.v1"],
      bundlePrewarm: 2,
    },
    permissions: { "system.run": true, "screen.record": false },
    pathEnv: "/usr/local/bin:/usr/bin:/bin",
    role: "node",
    scopes: [],
    device: signDeviceChallenge(identity, {
      nonce,
      clientId: client.id,
      clientMode: client.mode,
      role: "node",
      scopes: [],
      token: TOKEN,
      platform: client.platform,
      deviceFamily: client.deviceFamily,
    }),
    auth: {
      token: TOKEN,
      bootstrapToken: "",
      deviceToken: "",
      password: "",
      approvalRuntimeToken: "",
      agentRuntimeIdentityToken: "",
    },
    locale: "de-DE",
    userAgent: "openclaw-node/2026.9.1 (linux)",
  };
}

describe("connect params fields", () => {
  it("accepts a connect carrying every field of the protocol's ConnectParams, nested ones too", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = fullNodeConnect(client.challenge!.nonce);
    // The params are the protocol's, and carry each of its fields.
    expect(validatorOf("ConnectParams")(params)).toBe(true);
    const paths = propertyPaths(connectDefinition);
    expect(paths).toEqual(expect.arrayContaining(["client.buildId", "auth.approvalRuntimeToken"]));
    expect(paths.filter((path) => valueAt(params, path) === undefined)).toEqual([]);

    const hello = await client.request("connect", params);
    expect(hello.type).toBe("hello-ok");
    expect(hello.auth).toMatchObject({ role: "node" });
  });

  it("accepts the fields other OpenClaw releases' clients send (transports, modelCatalog)", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = {
      ...client.connectParams({ token: TOKEN, scopes: ["operator.read"] }),
      transports: ["json-ws"],
      modelCatalog: { agentId: "main" },
    };
    const hello = await client.requestUnchecked("connect", params);
    expect(hello.type).toBe("hello-ok");
    expect(hello.auth).toEqual({ role: "operator", scopes: ["operator.read"] });
  });

  it("refuses an unknown top-level field with INVALID_PARAMS, suggesting the field meant", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = { ...client.connectParams({ token: TOKEN }), scope: ["operator.read"] };
    const error = await rpcError(client.requestUnchecked("connect", params));
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.message).toBe(
      "invalid connect params: unknown field scope (did you mean scopes?)",
    );
    expect(error.details).toEqual({
      code: "INVALID_PARAMS",
      field: "scope",
      unknownFields: ["scope"],
    });
    expect(await client.closed).toEqual({ code: 1008, reason: "invalid connect params" });
  });

  it("names every unknown field, with a guess only where one is close", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = {
      ...client.connectParams({ token: TOKEN }),
      userAgnet: "x",
      tenantFlavour: "blue",
    };
    const error = await rpcError(client.requestUnchecked("connect", params));
    expect(error.message).toBe(
      "invalid connect params: unknown fields userAgnet (did you mean userAgent?), tenantFlavour",
    );
    expect(error.details).toEqual({
      code: "INVALID_PARAMS",
      field: "userAgnet",
      unknownFields: ["userAgnet", "tenantFlavour"],
    });
    expect((await client.closed).code).toBe(1008);
  });

  it("refuses an unknown field before any other check, even with the client block missing", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(
      client.requestUnchecked("connect", { minProtocol: 4, maxProtocol: 4, clients: {} }),
    );
    expect(error.details).toEqual({
      code: "INVALID_PARAMS",
      field: "clients",
      unknownFields: ["clients"],
    });
    expect(error.message).toMatch(/did you mean client\?/);
  });

  it("a refused connect leaves the gateway taking the same client's corrected connect", async () => {
    const { url } = await startStack();
    const refused = await TestClient.open(url);
    await rpcError(
      refused.requestUnchecked("connect", { ...refused.connectParams({ token: TOKEN }), rol: "x" }),
    );
    const client = await TestClient.connect(url, { token: TOKEN });
    expect(client.hello.type).toBe("hello-ok");
  });
});
