/**
 * A TPM limit counts a request by its estimate, then by the usage the provider reports. A
 * count that is not one (NaN from a provider's usage without output tokens, or from a custom
 * `estimateTokens`) must not switch the limit off for a minute without a word.
 */
import { describe, expect, it } from "vitest";
import {
  createProviderChain,
  InvalidArgumentError,
  type ModelRequest,
  type ModelUsage,
  type ProviderChainOptions,
} from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { readAll } from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

function limitedChain(
  usage: ModelUsage,
  estimateTokens: ProviderChainOptions["estimateTokens"] = () => 60,
) {
  const sleeps: number[] = [];
  // A clock the waits move on, so that a window's room comes back after a wait.
  let clock = 1_000_000;
  const a = createScriptedProvider({ id: "a" });
  for (let i = 0; i < 2; i++) a.push({ text: "ok", usage });
  const chain = createProviderChain({
    providers: [a],
    models: ["a/m"],
    limits: { "a/m": { tpm: 100 } },
    estimateTokens,
    now: () => clock,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock += ms;
    },
  });
  return { a, chain, sleeps };
}

describe("ProviderChain: TPM counts that are not numbers", () => {
  it("keeps the estimate when the reported usage has no output tokens", async () => {
    const { chain, sleeps } = limitedChain({ inputTokens: 15 } as ModelUsage);
    expect((await readAll(chain.stream(request))).error).toBeUndefined();
    // The first call still counts 60 of the 100: a second 60 must wait for the window.
    expect((await readAll(chain.stream(request))).error).toBeUndefined();
    expect(sleeps).toEqual([60_000]);
  });

  it("still corrects the estimate to a reported usage that is a count", async () => {
    const { chain, sleeps } = limitedChain({ inputTokens: 15, outputTokens: 10 });
    await readAll(chain.stream(request));
    await readAll(chain.stream(request));
    expect(sleeps).toEqual([]);
  });

  it("refuses an estimate that is not a finite count >= 0 with InvalidArgumentError", async () => {
    for (const estimate of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      const { a, chain } = limitedChain({ inputTokens: 1, outputTokens: 1 }, () => estimate);
      const { error } = await readAll(chain.stream(request));
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      expect((error as Error).message).toContain("estimateTokens returned");
      expect(a.requests).toHaveLength(0);
    }
  });
});
