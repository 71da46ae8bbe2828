/**
 * The encrypted reasoning contents an OpenAI provider remembers as refused (HTTP 400
 * `invalid_encrypted_content`, see responses-followups.test.ts) are bounded: a long-running
 * process with many sessions keeps digests of the most recently used ones only.
 */
import { describe, expect, it } from "vitest";
import { RejectedReasoning } from "../src/openai-responses.js";

describe("RejectedReasoning", () => {
  it("keeps the 1024 most recently used contents, and no more", async () => {
    const rejected = new RejectedReasoning();
    for (let i = 0; i < 1030; i++) await rejected.add(`gAAAA-${i}-${"x".repeat(2000)}`);
    expect(rejected.size).toBe(1024);
    expect(await rejected.has(`gAAAA-0-${"x".repeat(2000)}`)).toBe(false);
    expect(await rejected.has(`gAAAA-6-${"x".repeat(2000)}`)).toBe(true);
    expect(await rejected.has(`gAAAA-1029-${"x".repeat(2000)}`)).toBe(true);
    expect(await rejected.has(`gAAAA-1030-${"x".repeat(2000)}`)).toBe(false);
  });
});
