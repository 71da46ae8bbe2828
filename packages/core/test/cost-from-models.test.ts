/**
 * Cost accounting without a `cost` option: a `ProviderChain` prices a call from what its
 * provider says of the model (`modelInfo`), and the runtime uses that by default, so runs,
 * sessions and the usage meter carry a cost as soon as the provider knows its prices. An
 * explicit `cost` wins; an unknown model, provider or a malformed price costs 0.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createProviderChain, type ModelInfo, type ModelUsage } from "../src/index.js";
import { AgentRuntime } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const PRICES: Record<string, ModelInfo> = {
  "model-1": {
    id: "model-1",
    pricing: { inputPerMTok: 3, outputPerMTok: 15, cacheReadPerMTok: 0.3 },
  },
  broken: { id: "broken", pricing: { inputPerMTok: -1, outputPerMTok: 1 } },
};

/** A scripted provider that knows the prices of `PRICES`. */
function pricedProvider(script: Parameters<typeof createScriptedProvider>[0] = []) {
  return Object.assign(createScriptedProvider(script), {
    modelInfo: (id: string) => PRICES[id],
  });
}

const usage: ModelUsage = {
  inputTokens: 1_000_000,
  outputTokens: 100_000,
  cacheReadTokens: 500_000,
};

describe("ProviderChain.cost", () => {
  it("prices usage from the provider's modelInfo", () => {
    const chain = createProviderChain({ providers: [pricedProvider()], models: [] });
    // 500k uncached at $3, 500k cached at $0.30, 100k out at $15.
    expect(chain.cost("scripted/model-1", usage)).toBeCloseTo(1.5 + 0.15 + 1.5, 10);
  });

  it("is 0 for an unknown model, an unknown provider, a ref without a provider, a provider without modelInfo, and a malformed price", () => {
    const chain = createProviderChain({
      providers: [pricedProvider(), createScriptedProvider({ id: "plain" })],
      models: [],
    });
    expect(chain.cost("scripted/model-9", usage)).toBe(0);
    expect(chain.cost("nobody/model-1", usage)).toBe(0);
    expect(chain.cost("model-1", usage)).toBe(0);
    expect(chain.cost("plain/model-1", usage)).toBe(0);
    expect(chain.cost("scripted/broken", usage)).toBe(0);
    expect(chain.priced).toBe(true);
    // A chain of providers that know no prices says so, and prices nothing.
    const plain = createProviderChain({ providers: [createScriptedProvider({})], models: [] });
    expect(plain.priced).toBe(false);
    expect(plain.cost("scripted/model-1", usage)).toBe(0);
  });
});

describe("the runtime's default cost", () => {
  async function start(cost?: (ref: string, usage: ModelUsage) => number) {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [
          pricedProvider([{ text: "priced", usage: { inputTokens: 2_000, outputTokens: 1_000 } }]),
        ],
        models: [],
      }),
      agents: [{ id: "main", model: "scripted/model-1" }],
      ...(cost === undefined ? {} : { cost }),
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    return runtime;
  }

  it("is the chain's: the run, the session and the usage meter carry it", async () => {
    const runtime = await start();
    const session = runtime.session("agent:main:main");
    const result = await (await session.send("hi")).result;
    // 2k in at $3 and 1k out at $15 per million.
    const expected = (2_000 * 3 + 1_000 * 15) / 1e6;
    expect(result.costUsd).toBeCloseTo(expected, 12);
    expect((await session.info()).metadata.costUsd).toBeCloseTo(expected, 12);
    expect(runtime.usage.totals({ agentId: "main" }).costUsd).toBeCloseTo(expected, 12);
  });

  it("gives way to an explicit cost option", async () => {
    const runtime = await start(() => 0.5);
    const result = await (await runtime.session("agent:main:main").send("hi")).result;
    expect(result.costUsd).toBe(0.5);
  });
});
