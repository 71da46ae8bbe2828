/**
 * An agent's identity: how clients show it (OpenClaw's `agents.list[].identity`). One schema
 * for both places it is written: `AgentDefinition.identity` (checked by the runtime) and
 * `beamclaw.yaml` (`agents[].identity`).
 */
import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";

/** Longest `data:` avatar, in characters (it goes to every client with the agent list). */
export const MAX_AVATAR_DATA_URI_LENGTH = 256 * 1024;

const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((v) => v.trim().length > 0, "a non-empty text");

/**
 * An `http:`/`https:` URL, or a `data:` URI of an image (PNG, JPEG, GIF, WebP, SVG) in
 * base64.
 */
const avatar = z.string().refine(isAvatar, {
  message: `an http(s) URL (at most 2048 characters) or a base64 data:image URI (at most ${MAX_AVATAR_DATA_URI_LENGTH} characters)`,
});

function isAvatar(value: string): boolean {
  if (value.startsWith("data:")) {
    return (
      value.length <= MAX_AVATAR_DATA_URI_LENGTH &&
      /^data:image\/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/]+={0,2}$/.test(value)
    );
  }
  if (value.length > 2048) return false;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:";
  } catch {
    return false;
  }
}

/** The schema of {@link AgentIdentity}: unknown keys are refused. */
export const AgentIdentitySchema = z
  .object({
    name: text(100).optional(),
    theme: text(200).optional(),
    emoji: text(32).optional(),
    avatar: avatar.optional(),
  })
  .strict();

/**
 * How clients show an agent, as OpenClaw's `agents.list[].identity`: the gateway's
 * `agents.list` and `agent.identity.get` and its dashboard read it. Display only: it is never
 * sent to the model (give the agent its persona in `systemPrompt`).
 *
 * @example
 * ```ts
 * const agent: AgentDefinition = {
 *   id: "main",
 *   model: "anthropic/claude-sonnet-4-5",
 *   identity: { name: "Clawd", emoji: "🦞", theme: "space lobster" },
 * };
 * ```
 */
export interface AgentIdentity {
  /** Its display name, e.g. `Clawd`. At most 100 characters. */
  name?: string;
  /** A few words on its character, e.g. `space lobster`. At most 200 characters. */
  theme?: string;
  /** An emoji (or a short symbol) shown beside its name, e.g. `🦞`. At most 32 characters. */
  emoji?: string;
  /**
   * Its picture: an `https:`/`http:` URL (at most 2048 characters), or a `data:image/...`
   * URI in base64 (PNG, JPEG, GIF, WebP or SVG; at most 256 KiB).
   */
  avatar?: string;
}

/**
 * Checks an agent's identity; a copy without unset fields.
 *
 * @throws InvalidArgumentError naming the field (`<where>.name`, ...) and what it must be.
 */
export function checkAgentIdentity(value: unknown, where: string): AgentIdentity {
  const parsed = AgentIdentitySchema.safeParse(value);
  if (parsed.success) {
    const out: AgentIdentity = {};
    for (const key of ["name", "theme", "emoji", "avatar"] as const) {
      const field = parsed.data[key];
      if (field !== undefined) out[key] = field;
    }
    return out;
  }
  const issue = parsed.error.issues[0]!;
  const path = issue.path.length === 0 ? where : `${where}.${issue.path.join(".")}`;
  throw new InvalidArgumentError(`${path}: ${issue.message}`);
}
