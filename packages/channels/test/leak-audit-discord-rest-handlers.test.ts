/**
 * Leak audit: @discordjs/rest makes one rate-limit handler per route bucket and channel (its
 * "major parameter"), and the Discord channel turns the library's interval sweeps off. A bot
 * that talks in ever more channels (and DMs, each a channel of its own) must not keep a
 * handler for every one of them for the life of the process.
 */
import { REST } from "@discordjs/rest";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { HANDLER_SWEEP_THRESHOLD } from "../src/discord/rate-limits.js";
import { cleanups, runCleanups, startHarness } from "./discord/harness.js";
import {
  closeDiscordMsw,
  preloadDiscordLibraries,
  startDiscordPlatform,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(async () => {
  vi.restoreAllMocks();
  await runCleanups();
});
afterAll(() => closeDiscordMsw());

/**
 * A plugin (not started: sends need no gateway) on a fake Discord, without @discordjs/rest's
 * pacing of 50 requests a second (these tests send well over a thousand).
 */
async function unpaced() {
  const platform = await startDiscordPlatform();
  cleanups.push(() => platform.close());
  return startHarness({
    on: platform,
    start: false,
    plugin: { rest: { api: platform.api, globalRequestsPerSecond: 1_000_000 } },
  });
}

describe("REST rate-limit handlers", () => {
  it("stay bounded when the bot sends to ever more channels", async () => {
    // The channel's REST client is private; `setToken` runs on every use, on that client.
    const setToken = vi.spyOn(REST.prototype, "setToken");
    const h = await unpaced();
    const chats = HANDLER_SWEEP_THRESHOLD + 200;
    // Snowflake-shaped ids: @discordjs/rest keys a handler by bucket and channel id.
    let id = 1_400_000_000_000_000_000n;
    for (let i = 0; i < chats; i++) {
      id += 1n;
      await h.plugin.typing({ accountId: "default", chatType: "group", chatId: id.toString() });
    }
    const rest = setToken.mock.contexts.at(-1) as REST;
    expect(rest).toBeInstanceOf(REST);
    // Every send went out (one per channel), and each channel's handler is idle again.
    expect(h.platform.requests.filter((r) => r.path.endsWith("/typing"))).toHaveLength(chats);
    expect(rest.handlers.size).toBeLessThanOrEqual(HANDLER_SWEEP_THRESHOLD);
  });

  it("keep what they know of a bucket still rate limited", async () => {
    const h = await unpaced();
    const limited = {
      accountId: "default",
      chatType: "group" as const,
      chatId: "1500000000000000000",
    };
    // The first 429 tells @discordjs/rest the route's bucket; the second exhausts it (30 s).
    h.platform.answerNext(
      "POST",
      /^\/channels\/1500000000000000000\/typing$/,
      { kind: "rate-limit", retryAfter: 30 },
      { kind: "rate-limit", retryAfter: 30 },
    );
    for (let i = 0; i < 2; i++) {
      expect(await h.plugin.typing(limited).catch((e: unknown) => e)).toMatchObject({
        statusCode: 429,
      });
    }
    // Ever more channels: the idle handlers are dropped meanwhile.
    let id = 1_600_000_000_000_000_000n;
    for (let i = 0; i < HANDLER_SWEEP_THRESHOLD + 200; i++) {
      id += 1n;
      await h.plugin.typing({ accountId: "default", chatType: "group", chatId: id.toString() });
    }
    const before = h.platform.requests.length;
    // The limited channel's bucket is still known: refused at once, nothing sent.
    const refused = await h.plugin.typing(limited).catch((e: unknown) => e);
    expect(refused).toMatchObject({ isRetryable: true, statusCode: 429 });
    expect(h.platform.requests.length).toBe(before);
  });
});
