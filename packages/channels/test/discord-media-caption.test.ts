/**
 * `sendMedia` with a caption longer than a Discord message's `content` may be (2,000
 * characters): the file still goes out, and the caption follows it as messages of its own
 * (as the Telegram channel does with captions over 1,024), each with its own `nonce` so a
 * retried send posts nothing twice. Discord's REST API is faked by msw (`content` over 2,000
 * is answered `50035 Invalid Form Body`, as Discord does).
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCleanups, startHarness } from "./discord/harness.js";
import { closeDiscordMsw, preloadDiscordLibraries } from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

const room = { accountId: "default", chatType: "group" as const, chatId: "room-1" };
const png = Buffer.from("89504e470d0a1a0a", "hex").toString("base64");

type H = Awaited<ReturnType<typeof startHarness>>;
const posts = (h: H) =>
  h.platform.requests.filter((r) => r.method === "POST" && r.path.endsWith("/messages"));

/** A caption of `words` distinct words, so that nothing of it can go missing unseen. */
const longCaption = (words: number) =>
  Array.from({ length: words }, (_, i) => `word${i}`).join(" ");

describe("discord sendMedia with a caption over 2,000 characters", () => {
  it("uploads the file and sends the whole caption after it, nothing lost", async () => {
    const h = await startHarness();
    const caption = longCaption(500); // ~4,400 characters
    expect(caption.length).toBeGreaterThan(2000);
    const sent = await h.plugin.sendMedia(room, {
      kind: "image",
      data: png,
      mediaType: "image/png",
      name: "chart.png",
      caption,
    });
    const sentPosts = posts(h);
    expect(sentPosts.length).toBeGreaterThanOrEqual(3);
    const [file, ...rest] = sentPosts;
    expect(file?.files).toHaveLength(1);
    // The message id returned is the file's.
    expect(h.platform.messages.get(sent.messageId)?.attachments).toHaveLength(1);
    for (const post of rest) {
      const content = (post.body?.content as string | undefined) ?? "";
      expect(content.length).toBeGreaterThan(0);
      expect(content.length).toBeLessThanOrEqual(2000);
    }
    const shown = sentPosts.map((p) => (p.body?.content as string | undefined) ?? "").join(" ");
    expect(shown.split(/\s+/).filter(Boolean)).toEqual(caption.split(" "));
  });

  it("posts a link whose caption would push it over the limit, with the caption after it", async () => {
    const h = await startHarness();
    const url = `https://files.example/${"r".repeat(60)}.pdf`;
    const caption = "c".repeat(1990); // fits alone, not with "\n" + the URL
    await h.plugin.sendMedia(room, { kind: "file", url, caption });
    const contents = posts(h).map((p) => p.body?.content as string | undefined);
    expect(contents).toContain(url);
    expect(contents).toContain(caption);
  });

  it("a retried send (same idempotency key) posts neither the file nor the caption twice", async () => {
    const h = await startHarness();
    const caption = longCaption(400);
    const media = { kind: "image" as const, data: png, mediaType: "image/png", caption };
    const first = await h.plugin.sendMedia(room, media, { idempotencyKey: "entry-1:0" });
    const count = h.platform.messages.size;
    const again = await h.plugin.sendMedia(room, media, { idempotencyKey: "entry-1:0" });
    expect(again.messageId).toBe(first.messageId);
    expect(h.platform.messages.size).toBe(count);
    const nonces = posts(h).map((p) => p.body?.nonce);
    expect(nonces.every((n) => typeof n === "string" && n.length <= 25)).toBe(true);
  });

  it("a retry after Discord forgot the nonces resumes after the messages already sent (host's progress)", async () => {
    const h = await startHarness();
    const caption = longCaption(500); // the file, then three caption messages
    const media = { kind: "image" as const, data: png, mediaType: "image/png", caption };
    const sent: string[] = [];
    const progress = {
      get sent() {
        return [...sent];
      },
      record: async (id: string) => {
        sent.push(id);
      },
    };
    // The file and the first caption message go out; the second caption message is refused
    // (the bot lost access to the channel for a while; a 5xx the REST client would retry).
    h.platform.answerNext("POST", /\/messages$/, { kind: "pass" }, { kind: "pass" });
    h.platform.answerNext("POST", /\/messages$/, {
      kind: "error",
      status: 403,
      body: { message: "Missing Access", code: 50001 },
    });
    await expect(
      h.plugin.sendMedia(room, media, { idempotencyKey: "entry-2:0", progress }),
    ).rejects.toThrow();
    // The file and the first caption message were posted and recorded as confirmed.
    const existing = [...h.platform.messages.values()];
    expect(existing).toHaveLength(2);
    expect(sent).toEqual(existing.map((m) => m.id));
    // Minutes later (the outbox's back-off): Discord no longer knows the nonces.
    h.platform.expireNonces();
    const again = await h.plugin.sendMedia(room, media, { idempotencyKey: "entry-2:0", progress });
    expect(again.messageId).toBe(existing[0]!.id);
    const all = [...h.platform.messages.values()];
    expect(all.filter((m) => m.attachments.length > 0)).toHaveLength(1);
    const shown = all.map((m) => m.content).join(" ");
    expect(shown.split(/\s+/).filter(Boolean)).toEqual(caption.split(" "));
    // Every message the retry posted was recorded.
    expect(sent).toEqual(all.map((m) => m.id));
  });
});
