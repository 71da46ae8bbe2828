/**
 * A real `AgentRuntime` on a `MemoryStore` with a scripted model, for the `HeartbeatService`
 * tests, and the text of the last user message the model was sent.
 */
import { AgentRuntime, createProviderChain, MemoryStore } from "@beamclaw/core";
import { createScriptedProvider, type ScriptEntry } from "@beamclaw/core/testing";

/** Opens the store and starts the runtime; their stops are pushed onto `cleanups`. */
export async function heartbeatRuntime(
  cleanups: Array<() => Promise<void>>,
  responses: ScriptEntry[],
  now?: () => number,
) {
  const store = new MemoryStore(now === undefined ? {} : { now });
  await store.open();
  cleanups.push(() => store.close());
  const provider = createScriptedProvider({ id: "scripted", responses });
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/m1" }],
  });
  await runtime.start();
  cleanups.push(() => runtime.stop());
  return { store, provider, runtime };
}

/** The text of the last user message of the provider's last request. */
export function lastUserText(provider: ReturnType<typeof createScriptedProvider>): string {
  const user = provider.requests.at(-1)?.messages.findLast((m) => m.role === "user");
  if (user === undefined || typeof user.content === "string") return String(user?.content ?? "");
  return user.content.map((part) => ("text" in part ? part.text : "")).join("");
}
