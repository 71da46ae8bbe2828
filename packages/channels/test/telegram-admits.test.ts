/**
 * Telegram: a message's photos are downloaded (`getFile`, then the file) before the message
 * is handed over, and only when the host takes the message (`ctx.admits`): nothing is
 * fetched for a sender not paired or a group message that does not mention the bot. Against
 * the fake Bot API behind msw; the Bot API hands out a file only through `getFile`
 * (https://core.telegram.org/bots/api#getfile), so its calls count the downloads.
 */
import type { ChannelSettings } from "@beamclaw/core";
import type { Message } from "grammy/types";
import { describe, expect, it } from "vitest";
import { createTelegramChannel } from "../src/index.js";
import { managedHost } from "./shared-harness.js";
import {
  BOT,
  cleanups,
  FakeTelegram,
  groupMessage,
  mentionEntity,
  privateMessage,
  TOKEN,
  until,
  user,
  useTelegramApi,
} from "./telegram-platform.js";

useTelegramApi();

const ALICE = user(100_001, "Alice", "alice");
const EVE = user(100_005, "Eve", "eve");
const GROUP = -1_001_234_567_890;
const JPEG = Buffer.from("\xff\xd8\xff\xe0 a tiny jpeg", "latin1");

/** A photo message's fields, its file on the fake Bot API under `fileId`. */
function photo(api: FakeTelegram, fileId: string, caption = "look"): Partial<Message> {
  api.addFile(fileId, JPEG);
  return {
    text: undefined,
    caption,
    photo: [
      { file_id: fileId, file_unique_id: `u-${fileId}`, width: 320, height: 240, file_size: 11 },
    ],
  } as Partial<Message>;
}

/** The files the channel asked `getFile` for, in order. */
const asked = (api: FakeTelegram) =>
  api.calls.filter((c) => c.method === "getFile").map((c) => c.params.file_id);

/** A `ChannelManager` running the Telegram channel (long polling) on a fresh fake Bot API. */
async function managed(settings: ChannelSettings) {
  const api = new FakeTelegram();
  cleanups.push(async () => api.close());
  const plugin = createTelegramChannel({
    token: TOKEN,
    polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10 },
  });
  const host = await managedHost(plugin, settings, { cleanups, reply: "a photo" });
  const texts = () => api.actions.flatMap((a) => (a.kind === "text" ? [a.text ?? ""] : []));
  return { api, texts, ...host };
}

describe("nothing is downloaded for a message the host turns away", () => {
  it("dmPolicy pairing: an unknown sender's photos are not fetched and the pairing code is sent once; once approved, the next photo is fetched and reaches the model", async () => {
    const { api, manager, provider, statuses, texts } = await managed({ dmPolicy: "pairing" });
    api.push({ message: privateMessage(EVE, 1, "", photo(api, "eve-1")) });
    api.push({ message: privateMessage(EVE, 2, "", photo(api, "eve-2")) });
    await until("both answered", () => statuses.length === 2);
    expect(statuses).toEqual(["pairing", "pairing"]);
    await until("the pairing code", () => texts().some((t) => t.includes("pairing code")));
    expect(asked(api)).toEqual([]);

    const [request] = await manager.pairing.pending("telegram");
    await manager.approvePairing("telegram", request!.code, "owner");
    api.push({ message: privateMessage(EVE, 3, "", photo(api, "eve-3")) });
    await until("the model's request", () => provider.requests.length === 1);
    expect(asked(api)).toEqual(["eve-3"]);
    expect(provider.requests[0]!.messages.at(-1)!.content).toContainEqual({
      type: "image",
      mediaType: "image/jpeg",
      data: JPEG.toString("base64"),
    });
    await until("the reply", () => texts().includes("a photo"));
    expect(texts().filter((t) => t.includes("pairing code"))).toHaveLength(1);
  });

  it("requireMention: a group photo that does not mention the bot is not fetched; one that does is", async () => {
    const { api, provider, statuses } = await managed({ groupPolicy: "open" });
    api.push({ message: groupMessage(GROUP, ALICE, 1, "", photo(api, "plain")) });
    await until("the first answered", () => statuses.length === 1);
    expect(statuses).toEqual(["ignored"]);
    const caption = `@${BOT.username} look`;
    api.push({
      message: groupMessage(GROUP, ALICE, 2, "", {
        ...photo(api, "mentioned", caption),
        caption_entities: [mentionEntity(caption, BOT.username!)],
      }),
    });
    await until("the model's request", () => provider.requests.length === 1);
    expect(statuses.at(-1)).toBe("accepted");
    expect(asked(api)).toEqual(["mentioned"]);
  });
});
