/**
 * `HeartbeatService` gaps: wake lines claimed by a beat whose run failed before the model
 * replied (a provider error) are put back for the next beat, but not when the run got as far
 * as a model reply (no line handed twice); and the `heartbeat` event's `preview` is cut on a
 * code point boundary, never half an emoji.
 */
import { ProviderError } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { type HeartbeatEvent, HeartbeatService } from "../src/heartbeat.js";
import { heartbeatRuntime, lastUserText } from "./heartbeat-support.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function service(responses: ScriptEntry[]) {
  const { provider, runtime } = await heartbeatRuntime(cleanups, responses);
  const beats: HeartbeatEvent[] = [];
  const heartbeat = new HeartbeatService({
    runtime,
    settings: { enabled: false, everyMs: 3_600_000 },
    defaultAgentId: "main",
    onBeat: (event) => beats.push(event),
  });
  await heartbeat.start();
  cleanups.push(() => heartbeat.stop());
  return { provider, heartbeat, beats };
}

const providerDown: ScriptEntry = {
  error: new ProviderError("the provider is down", { kind: "overloaded", provider: "scripted" }),
};

describe("wake lines of a beat whose run failed", () => {
  it("are put back when the model never replied (a provider error), and the next beat carries them once", async () => {
    const { provider, heartbeat, beats } = await service([providerDown, "HEARTBEAT_OK"]);
    await heartbeat.wake("the deploy finished", false);
    await heartbeat.wake("Ada asked for the invoice", true);
    await waitFor("the failed beat", () => beats.length === 1);
    expect(beats[0]?.status).toBe("failed");
    expect(provider.requests).toHaveLength(1);
    expect(await heartbeat.pendingWakes()).toEqual([
      "the deploy finished",
      "Ada asked for the invoice",
    ]);
    await heartbeat.wake("one more", true);
    await waitFor("the next beat", () => beats.length === 2);
    expect(beats[1]?.status).toBe("ok-token");
    expect(lastUserText(provider)).toContain(
      "System events:\n- the deploy finished\n- Ada asked for the invoice\n- one more",
    );
    expect(await heartbeat.pendingWakes()).toEqual([]);
  });

  it("stay claimed when the run failed after the model replied (no line is handed twice)", async () => {
    const { provider, heartbeat, beats } = await service([
      { toolCalls: [{ toolName: "no_such_tool", input: {} }] },
      providerDown,
    ]);
    await heartbeat.wake("the deploy finished", true);
    await waitFor("the failed beat", () => beats.length === 1);
    expect(beats[0]?.status).toBe("failed");
    expect(provider.requests).toHaveLength(2);
    expect(await heartbeat.pendingWakes()).toEqual([]);
  });
});

describe("the heartbeat event's preview", () => {
  it("is cut at 200 UTF-16 units without splitting a surrogate pair", async () => {
    const reply = `${"a".repeat(199)}😀 and the rest of a long alert`;
    const { heartbeat, beats } = await service([reply]);
    await heartbeat.wake("check", true);
    await waitFor("the beat", () => beats.length === 1);
    expect(beats[0]?.status).toBe("sent");
    const preview = beats[0]?.preview ?? "";
    expect(preview.isWellFormed()).toBe(true);
    expect(preview).toBe("a".repeat(199));
  });

  it("keeps a whole pair that fits", async () => {
    const reply = `${"a".repeat(198)}😀 and the rest`;
    const { heartbeat, beats } = await service([reply]);
    await heartbeat.wake("check", true);
    await waitFor("the beat", () => beats.length === 1);
    expect(beats[0]?.preview).toBe(`${"a".repeat(198)}😀`);
  });
});
