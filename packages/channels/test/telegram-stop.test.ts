/**
 * The Telegram channel's `stop()` while the host is being handed updates (long polling),
 * against the fake Bot API behind msw: the stop waits for `ctx.receive` to settle (for up to
 * 5 s), confirms to Telegram what the host took — `getUpdates` with an offset past an update
 * confirms it (https://core.telegram.org/bots/api#getupdates) — and leaves unconfirmed what
 * it did not, so that nothing comes twice and nothing is lost across a restart.
 */
import type { ReceiveResult } from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import {
  createTelegramChannel,
  type TelegramChannel,
  type TelegramChannelOptions,
} from "../src/index.js";
import {
  cleanups,
  type FakeTelegram,
  privateMessage,
  quietLogger,
  startChannel,
  TOKEN,
  until,
  user,
  useTelegramApi,
  WEBHOOK_SECRET,
} from "./telegram-platform.js";

useTelegramApi();

const ALICE = user(100_001, "Alice", "alice");

const polling = (_api: FakeTelegram): TelegramChannel =>
  createTelegramChannel({
    token: TOKEN,
    polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10 },
  });

/** A promise and the function that settles it. */
function gate<T>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** `stop()` of `plugin`, and whether it has resolved yet. */
function stopping(plugin: TelegramChannel) {
  const state = { stopped: false, promise: Promise.resolve() };
  state.promise = plugin.stop().then(() => {
    state.stopped = true;
  });
  return state;
}

const getUpdatesCalls = (api: FakeTelegram) => api.calls.filter((c) => c.method === "getUpdates");

describe("Telegram long polling: stop() while the host takes an update", () => {
  it("waits for ctx.receive to settle, then confirms the update to Telegram: a new process does not get it again", async () => {
    const taken = gate<ReceiveResult>();
    const { api, plugin, received } = await startChannel(polling, (_input, n) =>
      n === 1 ? taken.promise : Promise.resolve({ status: "accepted" }),
    );
    cleanups.push(async () => api.close());
    const update = api.push({ message: privateMessage(ALICE, 1, "taken while stopping") });
    await until("the update to reach the host", () => received.length === 1);

    const stop = stopping(plugin);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The host is still writing the message to its queue: the channel is not stopped yet.
    expect(stop.stopped).toBe(false);
    taken.open({ status: "accepted" });
    await stop.promise;

    // Telegram was told: the last getUpdates carried the offset past the update, and it
    // asked for nothing to wait for.
    expect(getUpdatesCalls(api).at(-1)?.params).toMatchObject({
      offset: update.update_id + 1,
      timeout: 0,
    });
    expect(api.pendingUpdates.map((u) => u.update_id)).not.toContain(update.update_id);
    // Nothing of the channel goes on after stop() resolved.
    const calls = api.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(api.calls.length).toBe(calls);

    // A new process (a new channel, no offset kept) gets the next update, not this one again.
    const next = await startChannel(polling, undefined, api);
    cleanups.push(() => next.plugin.stop());
    api.push({ message: privateMessage(ALICE, 2, "after the restart") });
    await until("the next update", () => next.received.length === 1);
    expect(next.received.map((m) => m.text)).toEqual(["after the restart"]);
    expect(received.map((m) => m.text)).toEqual(["taken while stopping"]);
  });

  it("a restart of the channel does not hand over again an update the host took while it stopped", async () => {
    const taken = gate<ReceiveResult>();
    const channel = await startChannel(polling, (_input, n) =>
      n === 1 ? taken.promise : Promise.resolve({ status: "accepted" }),
    );
    cleanups.push(() => channel.stop());
    channel.api.push({ message: privateMessage(ALICE, 1, "first") });
    await until("the update to reach the host", () => channel.received.length === 1);
    const restarting = channel.restart();
    await new Promise((resolve) => setTimeout(resolve, 20));
    taken.open({ status: "accepted" });
    await restarting;
    channel.api.push({ message: privateMessage(ALICE, 2, "second") });
    await until("the second update", () => channel.received.length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(channel.received.map((m) => m.text)).toEqual(["first", "second"]);
  });

  it("gives a host that does not answer 5 s, then stops, leaving the update unconfirmed: it is fetched again", async () => {
    const { api, plugin, received, restart } = await startChannel(polling, (_input, n) =>
      n === 1 ? new Promise<ReceiveResult>(() => {}) : Promise.resolve({ status: "accepted" }),
    );
    cleanups.push(async () => {
      await plugin.stop();
      api.close();
    });
    const update = api.push({ message: privateMessage(ALICE, 1, "never answered") });
    await until("the update to reach the host", () => received.length === 1);

    const started = Date.now();
    const stop = stopping(plugin);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(stop.stopped).toBe(false);
    await stop.promise;
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(8_000);
    // Not confirmed: no getUpdates carried an offset past it.
    expect(api.pendingUpdates.map((u) => u.update_id)).toContain(update.update_id);
    expect(getUpdatesCalls(api).some((c) => (c.params.offset as number) > update.update_id)).toBe(
      false,
    );
    const calls = api.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(api.calls.length).toBe(calls);

    // Started again, the channel fetches it again, and the host takes it this time.
    await restart();
    await until("the update to come again", () => received.length === 2);
    expect(received[1]?.messageId).toBe(received[0]?.messageId);
  }, 15_000);

  it("confirms only up to the first update the host did not take before the stop", async () => {
    const first = gate<ReceiveResult>();
    const second = gate<ReceiveResult>();
    const { api, plugin, received } = await startChannel(polling, (_input, n) =>
      n === 1 ? first.promise : second.promise,
    );
    cleanups.push(async () => api.close());
    const one = api.push({ message: privateMessage(ALICE, 1, "one") });
    const two = api.push({ message: privateMessage(ALICE, 2, "two") });
    await until("both updates to reach the host", () => received.length === 2);
    const stop = stopping(plugin);
    first.open({ status: "accepted" });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(stop.stopped).toBe(false);
    // The host could not take the second one (its store failed): it stays unconfirmed.
    second.open(Promise.reject(new Error("the store is down")) as never);
    await stop.promise;
    expect(api.pendingUpdates.map((u) => u.update_id)).toEqual([two.update_id]);
    expect(getUpdatesCalls(api).at(-1)?.params).toMatchObject({ offset: one.update_id + 1 });
  });
});

describe("Telegram long polling ended by a refused getUpdates: no last getUpdates to confirm", () => {
  const CONFIRM_WARNING =
    "telegram could not confirm the updates the host took; they may come again after a restart";

  /**
   * A channel whose host has just taken an update (its offset not yet carried by a poll), and
   * `refuse` run before the channel polls again; with the warnings the channel logged.
   */
  async function refusedAfterTaking(
    refuse: (api: FakeTelegram) => void,
    polling: Partial<TelegramChannelOptions["polling"]> = {},
  ) {
    const warnings: string[] = [];
    const logger = { ...quietLogger, warn: (message: string) => void warnings.push(message) };
    const taken = gate<ReceiveResult>();
    const channel = await startChannel(
      () =>
        createTelegramChannel({
          token: TOKEN,
          polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10, ...polling },
        }),
      (_input, n) => (n === 1 ? taken.promise : Promise.resolve({ status: "accepted" })),
      undefined,
      logger,
    );
    cleanups.push(() => channel.stop());
    const update = channel.api.push({ message: privateMessage(ALICE, 1, "taken") });
    await until("the update to reach the host", () => channel.received.length === 1);
    refuse(channel.api);
    const before = getUpdatesCalls(channel.api).length;
    taken.open({ status: "accepted" });
    /** The getUpdates calls after the host took the update. */
    const polls = () => getUpdatesCalls(channel.api).slice(before);
    return { ...channel, update, warnings, polls };
  }

  /**
   * The host restarts the channel: its first poll carries the offset kept, so the update the
   * host took is confirmed and not handed over again.
   */
  async function reconnectConfirms(channel: Awaited<ReturnType<typeof refusedAfterTaking>>) {
    const { api, received, update } = channel;
    await channel.restart();
    api.push({ message: privateMessage(ALICE, 2, "after the reconnect") });
    await until("the next update", () => received.length === 2);
    expect(received.map((m) => m.text)).toEqual(["taken", "after the reconnect"]);
    expect(api.pendingUpdates.map((u) => u.update_id)).not.toContain(update.update_id);
  }

  /** The offset the channel keeps for its next start. */
  const keptOffset = async (plugin: TelegramChannel) =>
    ((await plugin.gatewayMethods.info!.handler(undefined, { scopes: [] })) as { offset: unknown })
      .offset;

  it("401 Unauthorized (a revoked token): the channel reports the loss and asks nothing more", async () => {
    const { api, plugin, update, warnings, polls, disconnects } = await refusedAfterTaking((api) =>
      api.revokeToken(),
    );
    await until("the loss to be reported", () => disconnects.length === 1);
    expect(disconnects[0]).toMatchObject({ method: "getUpdates", errorCode: 401 });
    await plugin.stop();
    expect(polls().map((c) => [c.params.timeout, c.answered])).toEqual([[2, 401]]);
    expect(warnings).not.toContain(CONFIRM_WARNING);
    // Nothing lost: the offset past the update is kept for the next start.
    expect(await keptOffset(plugin)).toBe(update.update_id + 1);
    expect(api.pendingUpdates.map((u) => u.update_id)).toEqual([update.update_id]);
  });

  it("409 Conflict (a webhook was set): nothing more is asked; the reconnect's first poll confirms the update, which does not come again", async () => {
    const channel = await refusedAfterTaking((api) => {
      api.webhook = { url: "https://elsewhere.example/telegram" };
    });
    const { plugin, warnings, polls, disconnects } = channel;
    await until("the loss to be reported", () => disconnects.length === 1);
    expect(disconnects[0]).toMatchObject({ method: "getUpdates", errorCode: 409 });
    await plugin.stop();
    expect(polls().map((c) => [c.params.timeout, c.answered])).toEqual([[2, 409]]);
    expect(warnings).not.toContain(CONFIRM_WARNING);

    // The host reconnects (start deletes the webhook): its first poll carries the offset.
    await reconnectConfirms(channel);
  });

  it("polls that kept failing (502s until disconnectAfterFailures): nothing more is asked; the reconnect confirms the update", async () => {
    const bad = { html: 502 } as const;
    const channel = await refusedAfterTaking((api) => api.script("getUpdates", bad, bad, bad), {
      disconnectAfterFailures: 2,
    });
    const { plugin, warnings, polls, disconnects } = channel;
    await until("the loss to be reported", () => disconnects.length === 1);
    await plugin.stop();
    expect(polls().map((c) => [c.params.timeout, c.answered])).toEqual([
      [2, 502],
      [2, 502],
    ]);
    expect(warnings).not.toContain(CONFIRM_WARNING);

    // The reconnect polls (the front end fails once more, then answers) with the offset.
    await reconnectConfirms(channel);
  });

  it("a stop while a 429's retry_after is being waited out asks nothing more (Telegram would refuse it) and does not wait it out", async () => {
    const tooMany = {
      errorCode: 429,
      description: "Too Many Requests: retry after 30",
      retryAfter: 30,
    } as const;
    const { plugin, update, warnings, polls } = await refusedAfterTaking((api) =>
      api.script("getUpdates", tooMany, tooMany),
    );
    await until("the 429", () => polls().length === 1);
    await plugin.stop();
    expect(polls().map((c) => [c.params.timeout, c.answered])).toEqual([[2, 429]]);
    expect(warnings).not.toContain(CONFIRM_WARNING);
    expect(await keptOffset(plugin)).toBe(update.update_id + 1);
  });
});

describe("Telegram webhook: stop() while the host takes an update", () => {
  const webhook = (_api: FakeTelegram): TelegramChannel =>
    createTelegramChannel({
      token: TOKEN,
      mode: "webhook",
      webhook: { secretToken: WEBHOOK_SECRET, url: "https://bot.example.com/telegram", port: 0 },
    });
  const url = (plugin: TelegramChannel): string => {
    const local = plugin.localUrl;
    if (local === undefined) throw new Error("the webhook is not listening");
    return local;
  };

  it("answers the request under way with 200 once ctx.receive resolved, then closes: Telegram does not deliver it again", async () => {
    const taken = gate<ReceiveResult>();
    const { api, plugin, received } = await startChannel(webhook, () => taken.promise);
    cleanups.push(async () => api.close());
    const where = url(plugin);
    const delivery = api.deliverWebhook(
      where,
      api.stamp({ message: privateMessage(ALICE, 1, "taken while stopping") }),
    );
    await until("the update to reach the host", () => received.length === 1);

    const stop = stopping(plugin);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stop.stopped).toBe(false);
    taken.open({ status: "accepted" });
    // Telegram's request is answered 200 (the update is confirmed), not dropped.
    expect(await delivery).toBe(200);
    await stop.promise;
    // Closed: nothing listens there any more.
    await expect(
      api.deliverWebhook(where, api.stamp({ message: privateMessage(ALICE, 2, "late") })),
    ).rejects.toThrow();
  });

  it("drops the request of a host that does not answer within 5 s, so that Telegram delivers it again", async () => {
    const { api, plugin, received } = await startChannel(webhook, () => new Promise(() => {}));
    cleanups.push(async () => api.close());
    const delivery = api
      .deliverWebhook(url(plugin), api.stamp({ message: privateMessage(ALICE, 1, "unanswered") }))
      .then(
        (status) => `answered ${status}`,
        () => "dropped",
      );
    await until("the update to reach the host", () => received.length === 1);
    const started = Date.now();
    await plugin.stop();
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(8_000);
    // No 2xx: Telegram keeps the update and delivers it again.
    expect(await delivery).toBe("dropped");
  }, 15_000);
});
