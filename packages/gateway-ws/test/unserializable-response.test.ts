/**
 * A method whose answer JSON cannot hold (a plugin that returns a BigInt, or an object with a
 * cycle) must still answer its caller — with a typed error — rather than leave it waiting for
 * a response that never comes; the connection goes on serving.
 */
import { afterEach, expect, it } from "vitest";
import { closeClients, rpcError, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

it("answers UNAVAILABLE / UNSERIALIZABLE_RESPONSE for an answer JSON cannot hold, and logs it", async () => {
  const lines: string[] = [];
  const stack = await startStack({ gateway: { logSink: (line) => lines.push(line) } });
  stack.gateway.registerMethod("demo.count", {
    scope: "operator.read",
    handler: () => ({ total: 12n }),
  });
  stack.gateway.registerMethod("demo.cycle", {
    scope: "operator.read",
    handler: () => {
      const node: Record<string, unknown> = { name: "a" };
      node.self = node;
      return node;
    },
  });
  const client = await TestClient.connect(stack.url, { token: TOKEN });
  for (const method of ["demo.count", "demo.cycle"]) {
    const error = await rpcError(client.requestUnchecked(method, {}));
    expect(error).toMatchObject({
      code: "UNAVAILABLE",
      message: expect.stringMatching(/^the answer could not be sent as JSON: /),
      details: { code: "UNSERIALIZABLE_RESPONSE" },
    });
  }
  expect(lines.filter((l) => l.includes("unserializable response to request"))).toHaveLength(2);
  expect((await client.request("health")).ok).toBe(true);
});
