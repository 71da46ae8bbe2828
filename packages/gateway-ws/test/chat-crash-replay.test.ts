/**
 * A `chat.send` run whose session crashes while it streams, over a real socket: the restarted
 * session replays it in the same run, and core withdraws what the crashed attempt streamed
 * (`text-reset`) without starting the run again. A chat client adding up the `chat` deltas
 * shows the answer once (the replay's first delta replaces the text), the run starts once
 * (one `agent` lifecycle start), and a `sessions.messages.subscribe` follower is sent each
 * message once.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  deferred,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

/** What a chat client shows from a run's `chat` deltas: `replace` starts the text over. */
function shown(client: TestClient, runId: string): string {
  let text = "";
  for (const e of client.events) {
    if (e.event !== "chat" || e.payload.runId !== runId || e.payload.state !== "delta") continue;
    text = e.payload.replace === true ? e.payload.deltaText : text + e.payload.deltaText;
  }
  return text;
}

describe("a chat run whose session crashed while it streamed", () => {
  it("is shown once to the chat client and to a session.message follower", async () => {
    // The first attempt streams "Hel" and waits (until the crash aborts it); the replay answers.
    const never = deferred<void>();
    const stack = await startStack({
      responses: [
        {
          events: [
            { type: "text-delta", text: "Hel" },
            { type: "wait", until: never.promise },
            { type: "text-delta", text: "lo" },
            { type: "finish", reason: "stop" },
          ],
        },
        { text: "Hello" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    await follower.request("sessions.messages.subscribe", { key: KEY });
    await client.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "run-1" });
    await client.waitEvent("chat", (p) => p.runId === "run-1" && p.deltaText === "Hel");

    stack.runtime.registry.whereis(`session:${KEY}`)!.kill();
    const final = (
      await client.waitEvent("chat", (p) => p.runId === "run-1" && p.state === "final")
    ).payload;
    never.resolve();
    expect(final.message).toMatchObject({ content: [{ type: "text", text: "Hello" }] });
    expect(shown(client, "run-1")).toBe("Hello");
    const agent = client.events
      .filter((e) => e.event === "agent" && e.payload.runId === "run-1")
      .map((e) => e.payload as Wire);
    const starts = agent.filter((p) => p.stream === "lifecycle" && p.data.phase === "start");
    expect(starts).toHaveLength(1);
    expect(agent.some((p) => p.stream === "assistant" && p.data.reset === true)).toBe(true);

    await follower.waitEvent(
      "session.message",
      (p) => p.sessionKey === KEY && p.message.role === "assistant",
    );
    const messages = follower.events
      .filter((e) => e.event === "session.message" && e.payload.sessionKey === KEY)
      .map((e) => `${e.payload.message.role}:${e.payload.message.content[0].text}`);
    expect(messages).toEqual(["user:hi", "assistant:Hello"]);
  });
});
