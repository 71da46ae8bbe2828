/**
 * Runs LineChat with a BeamClaw agent in it.
 *
 *   pnpm --filter beamclaw-example-custom-channel start
 *   nc 127.0.0.1 7070          # in another terminal: pick a nick, then
 *   /msg bot hello             # a direct message, or
 *   @bot what time is it?      # in #general (the bot answers when mentioned)
 *
 * The "model" is a parrot that streams your words back slowly, so that you can see the
 * typing indicator; swap in a real provider (`@beamclaw/providers`) for a real agent.
 * `--port <n>` picks the port, `--duration-ms <n>` stops after a while, Ctrl-C stops it.
 */
import {
  AgentRuntime,
  ChannelManager,
  createProviderChain,
  MemoryStore,
  type ModelProvider,
  type ModelStreamEvent,
} from "@beamclaw/core";
import { startChatServer } from "./chat-server.js";
import { createLineChatChannel } from "./line-chat-channel.js";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const port = option("--port", 7070);
const durationMs = option("--duration-ms", 0);

/** A model that repeats the last user message, a word at a time. */
const parrot: ModelProvider = {
  specificationVersion: "v1",
  id: "parrot",
  async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
    const last = request.messages.findLast((m) => m.role === "user");
    const said = last?.content.map((p) => ("text" in p ? p.text : "")).join("") ?? "";
    yield { type: "response-start", model: request.model };
    for (const word of `Squawk! ${said}`.split(" ")) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      if (options?.signal?.aborted) throw options.signal.reason;
      yield { type: "text-delta", text: `${word} ` };
    }
    yield { type: "finish", reason: "stop" };
  },
};

const server = await startChatServer({ port });
const store = new MemoryStore();
await store.open();
const runtime = new AgentRuntime({
  store,
  models: createProviderChain({ providers: [parrot], models: ["parrot/polly"] }),
  agents: [{ id: "main", model: "parrot/polly" }],
});
await runtime.start();
const channels = new ChannelManager({
  runtime,
  channels: [
    {
      plugin: createLineChatChannel({ port: server.port, nick: "bot" }),
      dmPolicy: "open",
      dmScope: "per-channel-peer",
      groupPolicy: "open",
      requireMention: true,
      typingIntervalMs: 1_000,
    },
  ],
  logger: console,
});
await channels.start();
console.log(
  `LineChat is listening on ${server.host}:${server.port}. Connect with: nc ${server.host} ${server.port}`,
);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  clearTimeout(timer);
  await channels.stop();
  await runtime.stop();
  await store.close();
  await server.close();
  console.log("stopped");
};
process.once("SIGINT", () => void stop());
const timer = durationMs > 0 ? setTimeout(() => void stop(), durationMs) : undefined;
