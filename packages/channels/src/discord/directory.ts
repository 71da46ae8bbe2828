/**
 * What the Discord channel remembers about the platform between events: who the bot is,
 * which channels are threads (and of which parent), which DM channel belongs to which user,
 * and which roles stand for the bot. Fed by gateway events (READY, GUILD_CREATE,
 * CHANNEL_*, THREAD_*), filled in by REST look-ups when an event arrives before its
 * channel is known. It outlives a connection: a resumed session does not resend it.
 */

/** Discord's thread channel types: ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD. */
const THREAD_TYPES: ReadonlySet<number> = new Set([10, 11, 12]);

/** True for the channel types that are threads (a thread is a channel with a parent). */
export function isThreadType(type: unknown): boolean {
  return typeof type === "number" && THREAD_TYPES.has(type);
}

/** What is known of one channel. */
export interface KnownChannel {
  id: string;
  type: number;
  guildId?: string;
  /** The text or forum channel a thread belongs to. */
  parentId?: string;
  name?: string;
}

/** The bot's own user, from READY. */
export interface BotUser {
  id: string;
  username: string;
  globalName?: string;
}

/** The most channels (and DM channels) remembered; the oldest are forgotten first. */
const MAX_ENTRIES = 50_000;

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_ENTRIES) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/** Reads a Discord channel object (REST or gateway), or `undefined` when it is not one. */
export function toKnownChannel(raw: unknown, guildId?: string): KnownChannel | undefined {
  const channel = record(raw);
  const id = text(channel?.id);
  if (channel === undefined || id === undefined || typeof channel.type !== "number") {
    return undefined;
  }
  const known: KnownChannel = { id, type: channel.type };
  const guild = text(channel.guild_id) ?? guildId;
  if (guild !== undefined) known.guildId = guild;
  const parent = text(channel.parent_id);
  if (parent !== undefined) known.parentId = parent;
  const name = text(channel.name);
  if (name !== undefined) known.name = name;
  return known;
}

/** The bot's view of Discord: channels, DM channels, its user and roles. */
export class DiscordDirectory {
  bot: BotUser | undefined;
  readonly #channels = new Map<string, KnownChannel>();
  /** User id -> the id of the DM channel with them. */
  readonly #dmChannels = new Map<string, string>();
  /** Guild id -> the ids of roles managed for this bot (an @-mention of one addresses it). */
  readonly #botRoles = new Map<string, Set<string>>();

  channel(id: string): KnownChannel | undefined {
    return this.#channels.get(id);
  }

  rememberChannel(channel: KnownChannel): void {
    remember(this.#channels, channel.id, channel);
  }

  forgetChannel(id: string): void {
    this.#channels.delete(id);
  }

  dmChannelOf(userId: string): string | undefined {
    return this.#dmChannels.get(userId);
  }

  rememberDmChannel(userId: string, channelId: string): void {
    remember(this.#dmChannels, userId, channelId);
  }

  /** True when `roleIds` holds a role Discord manages for this bot in `guildId`. */
  isBotRole(guildId: string | undefined, roleIds: readonly string[]): boolean {
    if (guildId === undefined || roleIds.length === 0) return false;
    const roles = this.#botRoles.get(guildId);
    return roles !== undefined && roleIds.some((id) => roles.has(id));
  }

  /**
   * Updates the directory from one gateway dispatch (`t`, `d`). Unknown events and
   * malformed payloads are ignored: they carry nothing the channel needs.
   */
  apply(type: string, data: unknown): void {
    const d = record(data);
    if (d === undefined) return;
    switch (type) {
      case "READY": {
        const user = record(d.user);
        const id = text(user?.id);
        if (id === undefined) return;
        this.bot = { id, username: text(user?.username) ?? "bot" };
        const globalName = text(user?.global_name);
        if (globalName !== undefined) this.bot.globalName = globalName;
        return;
      }
      case "GUILD_CREATE": {
        const guildId = text(d.id);
        if (guildId === undefined) return;
        for (const list of [d.channels, d.threads]) {
          if (!Array.isArray(list)) continue;
          for (const raw of list) {
            const channel = toKnownChannel(raw, guildId);
            if (channel !== undefined) this.rememberChannel(channel);
          }
        }
        this.#learnRoles(guildId, d.roles);
        return;
      }
      case "GUILD_ROLE_CREATE":
      case "GUILD_ROLE_UPDATE": {
        const guildId = text(d.guild_id);
        if (guildId !== undefined) this.#learnRoles(guildId, [d.role]);
        return;
      }
      case "GUILD_DELETE": {
        // An outage (`unavailable`) keeps what we know; leaving the guild forgets it.
        const guildId = text(d.id);
        if (guildId === undefined || d.unavailable === true) return;
        this.#botRoles.delete(guildId);
        for (const [id, channel] of this.#channels) {
          if (channel.guildId === guildId) this.#channels.delete(id);
        }
        return;
      }
      case "CHANNEL_CREATE":
      case "CHANNEL_UPDATE":
      case "THREAD_CREATE":
      case "THREAD_UPDATE": {
        const channel = toKnownChannel(d);
        if (channel !== undefined) this.rememberChannel(channel);
        return;
      }
      case "CHANNEL_DELETE":
      case "THREAD_DELETE": {
        const id = text(d.id);
        if (id !== undefined) this.forgetChannel(id);
        return;
      }
      case "THREAD_LIST_SYNC": {
        const guildId = text(d.guild_id);
        if (!Array.isArray(d.threads)) return;
        for (const raw of d.threads) {
          const channel = toKnownChannel(raw, guildId);
          if (channel !== undefined) this.rememberChannel(channel);
        }
        return;
      }
      default:
        return;
    }
  }

  #learnRoles(guildId: string, roles: unknown): void {
    const botId = this.bot?.id;
    if (botId === undefined || !Array.isArray(roles)) return;
    for (const raw of roles) {
      const role = record(raw);
      const id = text(role?.id);
      if (id === undefined || text(record(role?.tags)?.bot_id) !== botId) continue;
      let set = this.#botRoles.get(guildId);
      if (set === undefined) {
        set = new Set();
        this.#botRoles.set(guildId, set);
      }
      set.add(id);
    }
  }
}
