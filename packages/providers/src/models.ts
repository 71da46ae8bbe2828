/**
 * Built-in model lists with list prices, for cost accounting. Prices are US dollars per
 * million tokens as published by each vendor when this table was written; vendors change
 * them, so they may be outdated. Pass `models` to a provider to correct or extend them.
 */
import type { ModelInfo } from "@beamclaw/core";

function anthropic(
  id: string,
  input: number,
  output: number,
  cacheWrite: number,
  cacheRead: number,
): ModelInfo {
  return {
    id,
    contextWindow: 200_000,
    pricing: {
      inputPerMTok: input,
      outputPerMTok: output,
      cacheWritePerMTok: cacheWrite,
      // The one-hour cache's writes cost twice the input price.
      cacheWrite1hPerMTok: input * 2,
      cacheReadPerMTok: cacheRead,
    },
  };
}

/** Anthropic list prices; `cacheWritePerMTok` is the five-minute cache's. */
export const ANTHROPIC_MODELS: readonly ModelInfo[] = [
  anthropic("claude-opus-4-6", 5, 25, 6.25, 0.5),
  anthropic("claude-sonnet-4-6", 3, 15, 3.75, 0.3),
  anthropic("claude-opus-4-5", 5, 25, 6.25, 0.5),
  anthropic("claude-sonnet-4-5", 3, 15, 3.75, 0.3),
  anthropic("claude-haiku-4-5", 1, 5, 1.25, 0.1),
  anthropic("claude-opus-4-1", 15, 75, 18.75, 1.5),
  anthropic("claude-opus-4-0", 15, 75, 18.75, 1.5),
  anthropic("claude-sonnet-4-0", 3, 15, 3.75, 0.3),
  anthropic("claude-3-5-haiku-latest", 0.8, 4, 1, 0.08),
];

function openai(
  id: string,
  contextWindow: number,
  input: number,
  output: number,
  cacheRead: number,
): ModelInfo {
  return {
    id,
    contextWindow,
    pricing: { inputPerMTok: input, outputPerMTok: output, cacheReadPerMTok: cacheRead },
  };
}

/** OpenAI list prices (standard tier); OpenAI does not charge for cache writes. */
export const OPENAI_MODELS: readonly ModelInfo[] = [
  openai("gpt-5", 400_000, 1.25, 10, 0.125),
  openai("gpt-5-mini", 400_000, 0.25, 2, 0.025),
  openai("gpt-5-nano", 400_000, 0.05, 0.4, 0.005),
  openai("gpt-4.1", 1_047_576, 2, 8, 0.5),
  openai("gpt-4.1-mini", 1_047_576, 0.4, 1.6, 0.1),
  openai("gpt-4.1-nano", 1_047_576, 0.1, 0.4, 0.025),
  openai("gpt-4o", 128_000, 2.5, 10, 1.25),
  openai("gpt-4o-mini", 128_000, 0.15, 0.6, 0.075),
  openai("o3", 200_000, 2, 8, 0.5),
  openai("o4-mini", 200_000, 1.1, 4.4, 0.275),
];

function google(id: string, input: number, output: number, cacheRead: number): ModelInfo {
  return {
    id,
    contextWindow: 1_048_576,
    pricing: { inputPerMTok: input, outputPerMTok: output, cacheReadPerMTok: cacheRead },
  };
}

/**
 * Google Gemini API list prices (paid tier, prompts up to 200,000 tokens; longer prompts of
 * the Pro models cost more); output prices include thinking.
 */
export const GOOGLE_MODELS: readonly ModelInfo[] = [
  google("gemini-3-pro-preview", 2, 12, 0.2),
  google("gemini-3-flash-preview", 0.5, 3, 0.05),
  google("gemini-2.5-pro", 1.25, 10, 0.125),
  google("gemini-2.5-flash", 0.3, 2.5, 0.03),
  google("gemini-2.5-flash-lite", 0.1, 0.4, 0.01),
];

/**
 * The built-in list with the caller's entries applied: an entry with a known id replaces
 * the fields it sets, a new id is added. Returns copies, so callers cannot edit the table.
 */
export function mergeModels(
  builtIn: readonly ModelInfo[],
  overrides: readonly ModelInfo[] | undefined,
): ModelInfo[] {
  const byId = new Map<string, ModelInfo>();
  for (const model of builtIn) byId.set(model.id, copyModel(model));
  for (const model of overrides ?? []) {
    const known = byId.get(model.id);
    byId.set(model.id, known === undefined ? copyModel(model) : { ...known, ...copyModel(model) });
  }
  return [...byId.values()];
}

/** A copy of a model's entry (and its pricing), so callers cannot edit a table. */
export function copyModel(model: ModelInfo): ModelInfo {
  return model.pricing === undefined ? { ...model } : { ...model, pricing: { ...model.pricing } };
}

/**
 * A model of `models` by id: an exact match, else the longest id that `id` extends with a
 * `-` suffix (a dated snapshot such as `claude-sonnet-4-5-20250929` or
 * `gpt-4.1-mini-2025-04-14` is priced as its alias).
 */
export function findModel(models: readonly ModelInfo[], id: string): ModelInfo | undefined {
  let best: ModelInfo | undefined;
  for (const model of models) {
    if (model.id === id) return model;
    if (id.startsWith(`${model.id}-`) && (best === undefined || model.id.length > best.id.length)) {
      best = model;
    }
  }
  return best;
}
