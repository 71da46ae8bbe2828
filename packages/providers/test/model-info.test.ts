/**
 * `modelInfo(id)`: what each adapter knows of a model at once (its built-in list with the
 * caller's `models` corrections), which `ProviderChain.cost` prices usage with. A dated
 * snapshot is priced as its alias; an unknown model is undefined; the tables cannot be edited
 * through what it returns.
 */
import { createProviderChain } from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";

describe("modelInfo", () => {
  it("gives a built-in model's price, and a dated snapshot the price of its alias (the longest one)", () => {
    const anthropic = createAnthropicProvider({ apiKey: "k" });
    expect(anthropic.modelInfo?.("claude-sonnet-4-5")?.pricing?.inputPerMTok).toBe(3);
    expect(anthropic.modelInfo?.("claude-sonnet-4-5-20250929")?.id).toBe("claude-sonnet-4-5");
    const openai = createOpenAIProvider({ apiKey: "k" });
    // gpt-4.1-mini-2025-04-14 extends both gpt-4.1 and gpt-4.1-mini: the longer alias wins.
    expect(openai.modelInfo?.("gpt-4.1-mini-2025-04-14")?.id).toBe("gpt-4.1-mini");
    expect(openai.modelInfo?.("gpt-4.1-mini-2025-04-14")?.pricing?.inputPerMTok).toBe(0.4);
    const google = createGoogleProvider({ apiKey: "k" });
    expect(google.modelInfo?.("gemini-2.5-flash")?.pricing?.outputPerMTok).toBe(2.5);
    // A prefix that is not followed by "-" is another model.
    expect(google.modelInfo?.("gemini-2.5-flashy")).toBeUndefined();
    expect(anthropic.modelInfo?.("claude-unknown")).toBeUndefined();
  });

  it("applies the caller's models, and a compatible server knows only those", () => {
    const anthropic = createAnthropicProvider({
      apiKey: "k",
      models: [{ id: "claude-sonnet-4-5", pricing: { inputPerMTok: 2, outputPerMTok: 10 } }],
    });
    expect(anthropic.modelInfo?.("claude-sonnet-4-5")?.pricing).toEqual({
      inputPerMTok: 2,
      outputPerMTok: 10,
    });
    const local = createOpenAICompatibleProvider({
      id: "local",
      baseUrl: "http://127.0.0.1:11434/v1",
      models: [{ id: "llama3", pricing: { inputPerMTok: 0.1, outputPerMTok: 0.2 } }],
    });
    expect(local.modelInfo?.("llama3")?.pricing?.outputPerMTok).toBe(0.2);
    expect(local.modelInfo?.("qwen2.5")).toBeUndefined();
  });

  it("returns copies: editing one does not change the price list", () => {
    const google = createGoogleProvider({ apiKey: "k" });
    const info = google.modelInfo?.("gemini-2.5-pro");
    if (info?.pricing !== undefined) info.pricing.inputPerMTok = 999;
    expect(google.modelInfo?.("gemini-2.5-pro")?.pricing?.inputPerMTok).toBe(1.25);
  });

  it("prices a chain's usage by provider and model, snapshot included", () => {
    const chain = createProviderChain({
      providers: [createAnthropicProvider({ apiKey: "k" }), createGoogleProvider({ apiKey: "k" })],
    });
    const usage = { inputTokens: 1_000_000, outputTokens: 1_000_000, cacheReadTokens: 1_000_000 };
    // All input read from the cache at $0.30, output at $15.
    expect(chain.cost("anthropic/claude-sonnet-4-5-20250929", usage)).toBeCloseTo(15.3, 10);
    // Gemini 2.5 Flash: cache reads at $0.03, output at $2.50.
    expect(chain.cost("google/gemini-2.5-flash", usage)).toBeCloseTo(2.53, 10);
  });
});
