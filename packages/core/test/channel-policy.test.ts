/**
 * The pure rules under the channel host: DM and group policy, pairing codes in a key/value
 * store (with a fake clock), operator commands, reconnect backoff.
 */
import { describe, expect, it } from "vitest";
import {
  ChannelNotFoundError,
  ChannelSendError,
  decideAccess,
  InvalidInboundError,
  isBeamClawError,
  MemoryStore,
  PAIRING_CODE_ALPHABET,
  PairingCodeError,
  PairingStore,
  parseChannelCommand,
  reconnectDelay,
} from "../src/index.js";

const from = (id: string, chatType: "direct" | "group" = "direct", bot = false) => ({
  chatType,
  chatId: chatType === "direct" ? id : "room-1",
  peer: { id },
  mentions: { bot, peers: [] },
});

describe("decideAccess", () => {
  it("DM policy pairing lets in listed, paired and operator senders, and asks the others to pair", () => {
    const policy = { dmPolicy: "pairing" as const, allowFrom: ["ann"], operators: ["olga"] };
    expect(decideAccess(from("ann"), policy, false)).toEqual({ allow: true });
    expect(decideAccess(from("bob"), policy, true)).toEqual({ allow: true });
    expect(decideAccess(from("olga"), policy, false)).toEqual({ allow: true });
    expect(decideAccess(from("eve"), policy, false)).toMatchObject({
      allow: false,
      outcome: "pairing",
    });
  });

  it("DM policy allowlist blocks unknown senders, open admits anyone, disabled admits no one", () => {
    expect(
      decideAccess(from("eve"), { dmPolicy: "allowlist", allowFrom: ["ann"] }, false),
    ).toMatchObject({
      outcome: "blocked",
    });
    expect(decideAccess(from("eve"), { dmPolicy: "allowlist", allowFrom: ["*"] }, false)).toEqual({
      allow: true,
    });
    expect(decideAccess(from("eve"), { dmPolicy: "open" }, false)).toEqual({ allow: true });
    expect(
      decideAccess(from("olga"), { dmPolicy: "disabled", operators: ["olga"] }, true),
    ).toMatchObject({
      outcome: "blocked",
    });
  });

  it("group policy allowlist (the default) admits listed groups only, and requires a mention by default", () => {
    expect(decideAccess(from("ann", "group", true), {}, false)).toMatchObject({
      outcome: "blocked",
    });
    expect(decideAccess(from("ann", "group", true), { groups: ["room-1"] }, false)).toEqual({
      allow: true,
    });
    expect(decideAccess(from("ann", "group", false), { groups: ["*"] }, false)).toMatchObject({
      outcome: "ignored",
    });
    expect(
      decideAccess(from("ann", "group", false), { groups: ["*"], requireMention: false }, false),
    ).toEqual({
      allow: true,
    });
    expect(
      decideAccess(from("ann", "group", true), { groupPolicy: "disabled" }, false),
    ).toMatchObject({
      outcome: "blocked",
    });
  });
});

describe("PairingStore", () => {
  async function pairing(options: { ttlMs?: number; maxPending?: number } = {}) {
    let clock = 1_000_000;
    const store = new MemoryStore({ now: () => clock });
    await store.open();
    const pairs = new PairingStore({ kv: store.kv, now: () => clock, ...options });
    return { pairs, advance: (ms: number) => (clock += ms), store };
  }

  it("gives a sender one code of 8 unambiguous characters, the same while it is pending", async () => {
    const { pairs } = await pairing();
    const first = await pairs.request("telegram", "default", { id: "42", name: "Ann" });
    expect(first.created).toBe(true);
    expect(first.request!.code).toMatch(/^[A-HJ-NP-Z2-9]{8}$/);
    expect([...first.request!.code].every((c) => PAIRING_CODE_ALPHABET.includes(c))).toBe(true);
    const again = await pairs.request("telegram", "default", { id: "42" });
    expect(again).toMatchObject({ created: false, request: { code: first.request!.code } });
  });

  it("lets a code expire after its TTL, and then makes a new one", async () => {
    const { pairs, advance } = await pairing({ ttlMs: 60_000 });
    const { request } = await pairs.request("telegram", "default", { id: "42" });
    advance(60_001);
    await expect(pairs.approve("telegram", request!.code)).rejects.toBeInstanceOf(PairingCodeError);
    expect(await pairs.pending("telegram")).toEqual([]);
    const fresh = await pairs.request("telegram", "default", { id: "42" });
    expect(fresh.created).toBe(true);
  });

  it("lists pending requests oldest first; those of the same millisecond by channel, then code", async () => {
    const { pairs, advance } = await pairing({ maxPending: 10 });
    const sameMs: string[] = [];
    // Eight codes: the chance that they are drawn in sorted order is 1 in 40,320.
    for (const id of ["a", "b", "c", "d", "e", "f", "g", "h"])
      sameMs.push((await pairs.request("web", "default", { id })).request!.code);
    const chat = (await pairs.request("chat", "default", { id: "i" })).request!.code;
    advance(1);
    const later = (await pairs.request("web", "default", { id: "j" })).request!.code;
    const web = [...sameMs].sort().concat(later);
    expect((await pairs.pending("web")).map((r) => r.code)).toEqual(web);
    // Same millisecond: "chat" before "web", though asked last.
    expect((await pairs.pending()).map((r) => r.code)).toEqual([chat, ...web]);
  });

  it("caps pending requests per channel, and frees a place when one is answered", async () => {
    const { pairs } = await pairing({ maxPending: 3 });
    const codes: string[] = [];
    for (const id of ["a", "b", "c"])
      codes.push((await pairs.request("web", "default", { id })).request!.code);
    expect(await pairs.request("web", "default", { id: "d" })).toMatchObject({
      capped: true,
      created: false,
    });
    expect((await pairs.request("other", "default", { id: "d" })).created).toBe(true);
    await pairs.reject("web", codes[0]!);
    expect((await pairs.request("web", "default", { id: "d" })).created).toBe(true);
  });

  it("approves a code once (case-insensitive): the sender is approved, the code is spent", async () => {
    const { pairs } = await pairing();
    const { request } = await pairs.request("web", "default", { id: "u1", name: "Una" });
    const answers = await Promise.allSettled([
      pairs.approve("web", request!.code.toLowerCase(), "owner"),
      pairs.approve("web", request!.code, "owner"),
    ]);
    expect(answers.filter((a) => a.status === "fulfilled")).toHaveLength(1);
    expect(await pairs.isApproved("web", "default", "u1")).toBe(true);
    expect(await pairs.isApproved("web", "other-account", "u1")).toBe(false);
    expect(await pairs.approved("web")).toMatchObject([
      { peerId: "u1", peerName: "Una", approvedBy: "owner" },
    ]);
    expect(await pairs.revoke("web", "default", "u1")).toBe(true);
    expect(await pairs.isApproved("web", "default", "u1")).toBe(false);
    await expect(pairs.approve("web", "not-a-code")).rejects.toMatchObject({
      code: "PAIRING_CODE_INVALID",
    });
  });
});

describe("operator commands", () => {
  it("reads /approve, /approve always, /deny and /pair, and leaves anything else to the agent", () => {
    expect(parseChannelCommand("/approve 1a2b3c4d")).toEqual({
      kind: "approve",
      id: "1a2b3c4d",
      decision: "allow-once",
    });
    expect(parseChannelCommand("/approve@MyBot 1a2b3c4d always")).toEqual({
      kind: "approve",
      id: "1a2b3c4d",
      decision: "allow-always",
    });
    expect(parseChannelCommand(" /deny 1a2b3c4d ")).toEqual({
      kind: "approve",
      id: "1a2b3c4d",
      decision: "deny",
    });
    expect(parseChannelCommand("/pair approve K7M2Q9XD")).toEqual({
      kind: "pair",
      action: "approve",
      code: "K7M2Q9XD",
    });
    expect(parseChannelCommand("/pair list")).toEqual({ kind: "pair-list" });
    for (const text of [
      "/approve",
      "/approve x maybe",
      "please /approve x",
      "/deny a b",
      "/pair",
      "hello",
    ]) {
      expect(parseChannelCommand(text), text).toBeUndefined();
    }
  });
});

describe("reconnectDelay", () => {
  it("doubles from the base up to the ceiling, with jitter between half and all of it", () => {
    const options = { baseDelayMs: 100, maxDelayMs: 1_000 };
    expect([1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(n, options, () => 1))).toEqual([
      100, 200, 400, 800, 1_000, 1_000,
    ]);
    expect([1, 2, 3].map((n) => reconnectDelay(n, options, () => 0))).toEqual([50, 100, 200]);
  });
});

describe("channel errors", () => {
  it("carry stable codes and are recognised by code, even across copies of the library", () => {
    const cases = [
      [
        new ChannelSendError("discord", "429", {
          isRetryable: true,
          retryAfterMs: 1500,
          statusCode: 429,
        }),
        "CHANNEL_SEND_FAILED",
        ChannelSendError.isInstance,
      ],
      [new ChannelNotFoundError("irc"), "CHANNEL_NOT_FOUND", ChannelNotFoundError.isInstance],
      [
        new InvalidInboundError("web", "peer.id", "must be a non-empty string"),
        "INVALID_INBOUND",
        InvalidInboundError.isInstance,
      ],
      [new PairingCodeError("web", "AAAA"), "PAIRING_CODE_INVALID", PairingCodeError.isInstance],
    ] as const;
    for (const [error, code, isInstance] of cases) {
      expect(error.code).toBe(code);
      expect(isBeamClawError(error, code)).toBe(true);
      expect(isInstance(error)).toBe(true);
      // A plain object with the marker of another copy is recognised too.
      const foreign = Object.defineProperty({ code, message: "x" }, Symbol.for("beamclaw.error"), {
        value: true,
      });
      expect(isInstance(foreign)).toBe(true);
    }
    const send = cases[0][0];
    expect(send).toMatchObject({
      channel: "discord",
      isRetryable: true,
      retryAfterMs: 1500,
      statusCode: 429,
    });
    expect(ChannelSendError.isInstance(new ChannelNotFoundError("x"))).toBe(false);
  });
});
