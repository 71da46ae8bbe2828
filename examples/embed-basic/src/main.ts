/**
 * The smallest program that embeds BeamClaw in a host app: a runtime with one agent and one
 * tool, one conversation turn, and a clean stop.
 *
 *   pnpm start               # uses OpenAI-compatible http://127.0.0.1:11434/v1 (Ollama) by default
 *   pnpm start -- --scripted # uses a scripted in-memory model (what CI runs)
 *
 * Environment: BEAMCLAW_BASE_URL, BEAMCLAW_MODEL, BEAMCLAW_API_KEY for the real model.
 */
import {
  AgentRuntime,
  createProviderChain,
  defineTool,
  MemoryStore,
  type ModelProvider,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { createOpenAICompatibleProvider } from "@beamclaw/providers";
import { z } from "zod";

const scripted = process.argv.includes("--scripted");

// 1. A tool: arguments validated by zod, JSON Schema generated for the model.
const temperature = defineTool({
  name: "temperature",
  description: "The current temperature in a city, in degrees Celsius",
  parameters: z.object({ city: z.string().min(1) }),
  execute: ({ city }) => ({ city, celsius: city.toLowerCase() === "oslo" ? -3 : 21 }),
});

// 2. A model: a real OpenAI-compatible endpoint, or a script for CI.
const provider: ModelProvider = scripted
  ? createScriptedProvider({
      id: "local",
      responses: [
        {
          toolCalls: [{ toolName: "temperature", input: { city: "Oslo" } }],
          usage: { inputTokens: 30, outputTokens: 6 },
        },
        { text: ["It is ", "-3 °C ", "in Oslo."], usage: { inputTokens: 40, outputTokens: 8 } },
      ],
    })
  : createOpenAICompatibleProvider({
      id: "local",
      baseUrl: process.env.BEAMCLAW_BASE_URL ?? "http://127.0.0.1:11434/v1",
      apiKey: process.env.BEAMCLAW_API_KEY ?? "none",
    });

// 3. The runtime: a store, a model chain, an agent allowed to call the tool.
const store = new MemoryStore();
await store.open();
const runtime = new AgentRuntime({
  store,
  models: createProviderChain({ providers: [provider] }),
  agents: [
    {
      id: "main",
      model: `local/${process.env.BEAMCLAW_MODEL ?? "llama3"}`,
      systemPrompt: "You answer briefly. Use the temperature tool for weather questions.",
      tools: ["temperature"],
    },
  ],
  tools: [temperature],
});
await runtime.start();

// 4. One turn, streamed.
try {
  const run = await runtime.session("agent:main:main").send("How cold is it in Oslo?");
  for await (const event of run) {
    if (event.type === "tool-call")
      console.log(`[tool ${event.toolName}(${JSON.stringify(event.input)})]`);
    if (event.type === "text-delta") process.stdout.write(event.text);
  }
  const result = await run.result;
  console.log(
    `\n[${result.status}; ${result.steps} steps; ${result.usage.inputTokens}+${result.usage.outputTokens} tokens]`,
  );
  // The session's usage so far, from its transcript: per call, day and model, with its
  // messages and tool calls (`{ from, to }` narrows it to a span of time).
  const usage = await runtime.session("agent:main:main").usage();
  console.log(
    `[session: ${usage.totals.calls} model calls, ${usage.messages.total} messages, tools: ${usage.tools.map((t) => `${t.name} ×${t.calls}`).join(", ")}]`,
  );
  if (result.status !== "completed") {
    console.error(result.error?.message ?? "the run did not complete");
    process.exitCode = 1;
  } else if (scripted && result.text !== "It is -3 °C in Oslo.") {
    console.error(`unexpected answer: ${result.text}`);
    process.exitCode = 1;
  } else if (scripted && (usage.totals.calls !== 2 || usage.totals.inputTokens !== 70)) {
    console.error(`unexpected usage: ${JSON.stringify(usage.totals)}`);
    process.exitCode = 1;
  }
} finally {
  // 5. Stop: sessions saved, nothing left running.
  await runtime.stop();
  await store.close();
}
