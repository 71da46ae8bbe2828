/**
 * OpenAI's refusal of encrypted reasoning that no longer verifies (`invalid_encrypted_content`)
 * can come after the HTTP 200, in the Responses stream: as an `error` event
 * (`{"type": "error", "code", "message", "param", "sequence_number"}`) or as `response.failed`
 * whose `response.error.code` says so. Answered like the HTTP 400 (responses-followups.test.ts)
 * while nothing has streamed to the caller: sent once more without the encrypted reasoning, the
 * contents remembered as refused. Once output has streamed it is never repeated: the error is
 * thrown.
 */
import {
  AbortedError,
  type ModelRequest,
  type ModelStreamEvent,
  ProviderError,
} from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../src/index.js";
import {
  collect,
  collectFailure,
  expectWellFormed,
  fixture,
  mswFakes,
  sseResponse,
  textOf,
  userText,
} from "./support.js";

const API = "https://api.openai.com/v1";
const { server } = mswFakes();

type Item = { type?: string; id?: string; encrypted_content?: string; [key: string]: unknown };
type Body = { model: string; input: Item[] };

const REFUSED_ID = "resp_68b2e1f0a4c88190b7d6c5e4f3a2b1c0";
const MESSAGE = "The encrypted content for item rs_1 could not be verified.";

/** One SSE event as the Responses API sends it. */
const sse = (data: Record<string, unknown>) =>
  `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;

/** The `response` object of a streamed event, as OpenAI sends it. */
function responseObject(status: string, error: Record<string, unknown> | null) {
  return {
    id: REFUSED_ID,
    object: "response",
    created_at: 1741290958,
    status,
    error,
    incomplete_details: null,
    model: "o4-mini-2025-04-16",
    output: [],
    store: true,
    usage: null,
  };
}

/** `response.created` and `response.in_progress`: what streams before the model's output. */
const opening = () =>
  sse({
    type: "response.created",
    sequence_number: 0,
    response: responseObject("in_progress", null),
  }) +
  sse({
    type: "response.in_progress",
    sequence_number: 1,
    response: responseObject("in_progress", null),
  });

/** The refusal as an `error` event. */
const errorEvent = (sequence: number) =>
  sse({
    type: "error",
    code: "invalid_encrypted_content",
    message: MESSAGE,
    param: null,
    sequence_number: sequence,
  });

/** The refusal as `response.failed`. */
const failedEvent = (sequence: number) =>
  sse({
    type: "response.failed",
    sequence_number: sequence,
    response: responseObject("failed", { code: "invalid_encrypted_content", message: MESSAGE }),
  });

/** Some text streamed before the refusal. */
const someText = () =>
  sse({
    type: "response.output_item.added",
    sequence_number: 2,
    output_index: 0,
    item: { id: "msg_1", type: "message", status: "in_progress", role: "assistant", content: [] },
  }) +
  sse({
    type: "response.output_text.delta",
    sequence_number: 3,
    item_id: "msg_1",
    output_index: 0,
    content_index: 0,
    delta: "Hel",
  });

/**
 * OpenAI's Responses API for an organization whose key verifies no encrypted content: a body
 * carrying any gets `refusal` (a 200 whose stream refuses it); any other gets `answer` (the
 * recorded text stream). Returns the bodies it saw.
 */
function serveOrganization(
  refusal: () => HttpResponse<never>,
  answer: (request: Request) => HttpResponse<never> = () =>
    sseResponse(fixture("openai-responses-text.sse.txt")),
): Body[] {
  const seen: Body[] = [];
  server.use(
    http.post(`${API}/responses`, async ({ request }) => {
      const body = (await request.json()) as Body;
      seen.push(body);
      const carries = body.input.some((item) => item.encrypted_content !== undefined);
      return carries ? refusal() : answer(request);
    }),
  );
  return seen;
}

/**
 * A conversation whose last answer's reasoning carries `encrypted`, as the adapter kept it
 * (store: true: paired with the message after it), then the user's `next` question.
 */
function answered(encrypted: string, next = "And tomorrow?"): ModelRequest {
  return {
    model: "o4-mini",
    thinking: "medium",
    messages: [
      userText("Weather in Oslo?"),
      {
        role: "assistant",
        content: [
          { type: "thinking", text: "Say it.", signature: "rs_1|msg_1", redacted: encrypted },
          { type: "text", text: "It is -3 C in Oslo." },
        ],
      },
      userText(next),
    ],
  };
}

const carried = (body: Body | undefined) =>
  body?.input.filter((item) => item.encrypted_content !== undefined) ?? [];

const ofType = <T extends ModelStreamEvent["type"]>(events: ModelStreamEvent[], type: T) =>
  events.filter((event) => event.type === type);

describe("Responses API: invalid_encrypted_content in the stream, before any output", () => {
  for (const [shape, refusal] of [
    ["an error event", () => sseResponse(opening() + errorEvent(2))],
    ["response.failed", () => sseResponse(opening() + failedEvent(2))],
  ] as const) {
    it(`as ${shape}: sent once more without the encrypted reasoning, which later calls leave out`, async () => {
      const seen = serveOrganization(refusal);
      const provider = createOpenAIProvider({ apiKey: "sk-new-org" });
      const events = await collect(provider.stream(answered("gAAAA-other-org")));
      expectWellFormed(events);
      expect(textOf(events)).toBe("Hi there!");
      // One start, the answered response's, not the refused one's; its usage counted once.
      expect(ofType(events, "response-start")).toEqual([
        {
          type: "response-start",
          id: "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654",
          model: "gpt-4.1-2025-04-14",
        },
      ]);
      expect(ofType(events, "usage")).toEqual([
        {
          type: "usage",
          usage: { inputTokens: 2100, outputTokens: 11, cacheReadTokens: 2048, reasoningTokens: 0 },
        },
      ]);
      expect(seen).toHaveLength(2);
      expect(seen[0]?.input.map((item) => item.id ?? item.type ?? item.role)).toEqual([
        "user",
        "rs_1",
        "msg_1",
        "user",
      ]);
      expect(carried(seen[0])).toHaveLength(1);
      expect(JSON.stringify(seen[1])).not.toContain("gAAAA-other-org");
      // Without its reasoning, the answer goes without its id.
      expect(seen[1]?.input[1]).toEqual({ role: "assistant", content: "It is -3 C in Oslo." });

      await collect(provider.stream(answered("gAAAA-other-org", "And the day after?")));
      expect(seen).toHaveLength(3);
      expect(JSON.stringify(seen[2])).not.toContain("gAAAA-other-org");
    });
  }

  it("a second try refused in its stream too is thrown, typed, with no third try", async () => {
    const seen = serveOrganization(
      () => sseResponse(opening() + errorEvent(2)),
      () => sseResponse(opening() + failedEvent(2)),
    );
    const { events, error } = await collectFailure(
      createOpenAIProvider({ apiKey: "sk-new-org" }).stream(answered("gAAAA-other-org")),
    );
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.message).toContain("invalid_encrypted_content");
    expect(error.message).toContain(MESSAGE);
    expect(error.statusCode).toBeUndefined();
    expect(seen).toHaveLength(2);
    expect(carried(seen[1])).toEqual([]);
    // The second try's start was not held (it could not be sent again): nothing else came.
    expect(events).toEqual([
      { type: "response-start", id: REFUSED_ID, model: "o4-mini-2025-04-16" },
    ]);
  });

  it("the second try follows the call's signal: an abort mid-stream cancels its request", async () => {
    const signals: AbortSignal[] = [];
    // The second try opens its stream and then sends nothing more.
    const seen = serveOrganization(
      () => sseResponse(opening() + errorEvent(2)),
      (request) => {
        signals.push(request.signal);
        return new HttpResponse(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new TextEncoder().encode(opening()));
            },
          }) as never,
          { headers: { "content-type": "text/event-stream" } },
        );
      },
    );
    const controller = new AbortController();
    const iterator = createOpenAIProvider({ apiKey: "sk-new-org" })
      .stream(answered("gAAAA-other-org"), { signal: controller.signal })
      [Symbol.asyncIterator]();
    try {
      expect((await iterator.next()).value).toEqual({
        type: "response-start",
        id: REFUSED_ID,
        model: "o4-mini-2025-04-16",
      });
      expect(seen).toHaveLength(2);
      controller.abort();
      const error = await iterator.next().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(AbortedError.isInstance(error)).toBe(true);
      await expect.poll(() => signals[0]?.aborted).toBe(true);
    } finally {
      await iterator.return?.();
    }
  });
});

describe("Responses API: invalid_encrypted_content in the stream, not sent again", () => {
  it("after text streamed: the error is thrown, the text not repeated, the content remembered", async () => {
    const seen = serveOrganization(() => sseResponse(opening() + someText() + errorEvent(4)));
    const provider = createOpenAIProvider({ apiKey: "sk-new-org" });
    const { events, error } = await collectFailure(provider.stream(answered("gAAAA-other-org")));
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.message).toContain("invalid_encrypted_content");
    expect(error.responseBody).toContain('"sequence_number":4');
    expect(seen).toHaveLength(1);
    expect(events).toEqual([
      { type: "response-start", id: REFUSED_ID, model: "o4-mini-2025-04-16" },
      { type: "text-delta", text: "Hel" },
    ]);
    // The next call leaves the refused content out at once.
    const next = await collect(provider.stream(answered("gAAAA-other-org")));
    expect(textOf(next)).toBe("Hi there!");
    expect(seen).toHaveLength(2);
    expect(carried(seen[1])).toEqual([]);
  });

  it("a call that sent no encrypted content: thrown as it is, its start not held", async () => {
    const seen: Body[] = [];
    server.use(
      http.post(`${API}/responses`, async ({ request }) => {
        seen.push((await request.json()) as Body);
        return sseResponse(opening() + errorEvent(2));
      }),
    );
    const { events, error } = await collectFailure(
      createOpenAIProvider({ apiKey: "sk-test" }).stream({
        model: "o4-mini",
        messages: [userText("Hello")],
      }),
    );
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.message).toContain("invalid_encrypted_content");
    expect(events).toEqual([
      { type: "response-start", id: REFUSED_ID, model: "o4-mini-2025-04-16" },
    ]);
    expect(seen).toHaveLength(1);
  });
});
