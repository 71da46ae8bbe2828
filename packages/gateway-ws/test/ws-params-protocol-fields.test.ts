/**
 * The list of params fields each built-in method takes (`src/protocol/method-params.ts`)
 * against OpenClaw's protocol schema: every field of a method's params definition is taken,
 * only a method whose params the schema leaves open (`wake`) takes any field, and every
 * method the gateway advertises has its list.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { methodParamFields } from "../src/protocol/method-params.js";
import { closeClients, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

interface Definition {
  properties?: Record<string, unknown>;
  additionalProperties?: unknown;
  anyOf?: Definition[];
}
const protocol = JSON.parse(
  readFileSync(
    fileURLToPath(
      new URL("../node_modules/@openclaw/gateway-protocol/protocol.schema.json", import.meta.url),
    ),
    "utf8",
  ),
) as { definitions: Record<string, Definition> };

/** Methods whose params definition is not named after the method. */
const DEFINITION_NAMES: Record<string, string> = {
  "agent.identity.get": "AgentIdentityParams",
  "sessions.steer": "SessionsSendParams",
  "exec.approval.waitDecision": "ExecApprovalGetParams",
};

/** `sessions.list` → `SessionsListParams`, when the protocol has it. */
function paramsDefinition(method: string): Definition | undefined {
  const name =
    DEFINITION_NAMES[method] ??
    `${method
      .split(/[.-]/)
      .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
      .join("")}Params`;
  return protocol.definitions[name];
}

/** Every property of a definition (of each branch of an `anyOf`). */
function propertiesOf(definition: Definition): string[] {
  return [
    ...Object.keys(definition.properties ?? {}),
    ...(definition.anyOf ?? []).flatMap(propertiesOf),
  ];
}

describe("params fields of the built-in methods", () => {
  it("every field of the protocol's params is taken; only `wake`'s open params take any", async () => {
    const stack = await startStack();
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const missing: string[] = [];
    for (const method of operator.hello.features.methods as string[]) {
      const definition = paramsDefinition(method);
      const fields = methodParamFields(method);
      if (definition === undefined || fields === undefined) continue;
      if (definition.additionalProperties === true) {
        expect(fields, method).toBe("open");
        continue;
      }
      expect(fields, method).not.toBe("open");
      for (const field of propertiesOf(definition)) {
        if (fields !== "open" && !fields.has(field)) missing.push(`${method}.${field}`);
      }
    }
    expect(missing).toEqual([]);
    expect(methodParamFields("wake")).toBe("open");
  });

  it("every method the gateway advertises has its list", async () => {
    const stack = await startStack({ cron: true });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const methods = operator.hello.features.methods as string[];
    expect(methods.filter((method) => methodParamFields(method) === undefined)).toEqual([]);
  });
});
