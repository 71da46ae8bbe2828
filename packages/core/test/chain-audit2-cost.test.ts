/**
 * `computeCost` never answers NaN: a price list without a required price is refused like a
 * negative one, and `ProviderChain.cost` prices such a model at 0.
 */
import { describe, expect, it } from "vitest";
import {
  computeCost,
  createProviderChain,
  InvalidArgumentError,
  type ModelPricing,
} from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";

const usage = { inputTokens: 1_000, outputTokens: 1_000 };

describe("computeCost with missing prices", () => {
  it("rejects a price list without inputPerMTok or outputPerMTok with InvalidArgumentError", () => {
    for (const pricing of [
      { outputPerMTok: 15 },
      { inputPerMTok: 3 },
      { inputPerMTok: 3, outputPerMTok: null },
      {},
    ]) {
      expect(() => computeCost(usage, pricing as unknown as ModelPricing)).toThrow(
        InvalidArgumentError,
      );
    }
  });

  it("ProviderChain.cost prices a model whose price list lacks a required price at 0, not NaN", () => {
    const provider = Object.assign(createScriptedProvider({ id: "a" }), {
      modelInfo: (id: string) => ({ id, pricing: { inputPerMTok: 3 } as unknown as ModelPricing }),
    });
    const chain = createProviderChain({ providers: [provider], models: [] });
    expect(chain.cost("a/m", usage)).toBe(0);
  });
});
