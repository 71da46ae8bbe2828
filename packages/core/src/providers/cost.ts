import { InvalidArgumentError } from "../errors.js";
import type { ModelPricing, ModelUsage } from "./types.js";

/**
 * The cost in US dollars of one call, from its usage and the model's price per million
 * tokens.
 *
 * `inputTokens` is taken as all the input the model read, cached or not, and
 * `cacheReadTokens` / `cacheWriteTokens` as the parts of it served from or written to the
 * prompt cache: those are priced at `cacheReadPerMTok` / `cacheWritePerMTok` (the input
 * price when not given), the rest at `inputPerMTok`. The part of the writes that went to a
 * one-hour cache (`cacheWrite1hTokens`) is priced at `cacheWrite1hPerMTok` (the five-minute
 * write price when not given). `reasoningTokens` are part of
 * `outputTokens` and priced with them.
 *
 * @example
 * ```ts
 * const usd = computeCost(
 *   { inputTokens: 12_000, outputTokens: 800, cacheReadTokens: 10_000 },
 *   { inputPerMTok: 3, outputPerMTok: 15, cacheReadPerMTok: 0.3 },
 * ); // 0.006 + 0.003 + 0.012 = 0.021
 * ```
 *
 * @throws InvalidArgumentError when `inputPerMTok` or `outputPerMTok` is missing, or any
 * price given is not a finite number >= 0 (the cost would be NaN or negative).
 */
export function computeCost(usage: ModelUsage, pricing: ModelPricing): number {
  if (typeof pricing !== "object" || pricing === null) {
    throw new InvalidArgumentError(`pricing must be an object, got ${String(pricing)}`);
  }
  // The two prices every price list has: without one, the sum would be NaN.
  for (const name of ["inputPerMTok", "outputPerMTok"] as const) {
    if (typeof pricing[name] !== "number") {
      throw new InvalidArgumentError(
        `pricing.${name} must be a finite number >= 0, got ${String(pricing[name])}`,
      );
    }
  }
  for (const [name, value] of Object.entries(pricing)) {
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new InvalidArgumentError(
        `pricing.${name} must be a finite number >= 0, got ${String(value)}`,
      );
    }
  }
  const cacheRead = usage.cacheReadTokens ?? 0;
  const cacheWrite = usage.cacheWriteTokens ?? 0;
  const cacheWrite1h = Math.min(usage.cacheWrite1hTokens ?? 0, cacheWrite);
  const uncached = Math.max(0, usage.inputTokens - cacheRead - cacheWrite);
  const writePrice = pricing.cacheWritePerMTok ?? pricing.inputPerMTok;
  const micro =
    uncached * pricing.inputPerMTok +
    cacheRead * (pricing.cacheReadPerMTok ?? pricing.inputPerMTok) +
    (cacheWrite - cacheWrite1h) * writePrice +
    cacheWrite1h * (pricing.cacheWrite1hPerMTok ?? writePrice) +
    usage.outputTokens * pricing.outputPerMTok;
  return micro / 1_000_000;
}
