/** Shared set-up of the `/v1/responses` tests: a gateway with the endpoint on, and a POST. */
import { AUTH, httpCall, type Stack, startStack } from "./support.js";

type ScriptEntries = NonNullable<Parameters<typeof startStack>[0]>["responses"];

/**
 * A gateway with `/v1/responses` turned on, over a scripted provider. `now` is the store's
 * clock (for TTLs); `logs` collects the gateway's log lines; `keepMs` is
 * `http.responsesKeepMs`.
 */
export function startResponses(
  responses: ScriptEntries = [],
  options: { now?: () => number; logs?: string[]; keepMs?: number } = {},
): Promise<Stack> {
  const logs = options.logs;
  return startStack({
    responses,
    gateway: {
      http: {
        responses: true,
        ...(options.keepMs === undefined ? {} : { responsesKeepMs: options.keepMs }),
      },
      ...(logs === undefined ? {} : { logSink: (line: string) => logs.push(line) }),
    },
    ...(options.now === undefined ? {} : { store: { now: options.now } }),
  });
}

/** `POST /v1/responses` with `body` (the bearer token unless other headers are given). */
export function post(stack: Stack, body: unknown, headers: Record<string, string> = AUTH) {
  return httpCall(stack.port, "/v1/responses", { method: "POST", headers, body });
}

/** A client function tool as the Responses API takes it. */
export const WEATHER_TOOL = {
  type: "function",
  name: "get_weather",
  description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } } },
};

/**
 * What the model is sent for an answered Oslo weather call (`call_1`, `{"celsius":4}`): the
 * user's question, the assistant's tool call, and its result.
 */
export const OSLO_CALL_SENT = [
  { role: "user", content: [{ type: "text", text: "Weather in Oslo?" }] },
  {
    role: "assistant",
    content: [
      { type: "tool-call", toolCallId: "call_1", toolName: "get_weather", input: { city: "Oslo" } },
    ],
  },
  {
    role: "tool",
    content: [
      {
        type: "tool-result",
        toolCallId: "call_1",
        toolName: "get_weather",
        output: '{"celsius":4}',
      },
    ],
  },
];
