/**
 * Text that says nothing (empty, or only whitespace), and the user messages made of it: the
 * rule every adapter follows, so that the same history reaches every vendor alike.
 */
import type { ModelMessage } from "@beamclaw/core";

/**
 * What a message that says nothing is sent as where it cannot be left out.
 *
 * A user message: vendors refuse a message without content (Anthropic: "all messages must
 * have non-empty content except for the optional final assistant message"; Gemini:
 * "contents.parts must not be empty"; OpenAI: an empty `content` array), and leaving it out
 * would make the turn before it the last one (Anthropic's newer models and Gemini refuse a
 * conversation that ends with the assistant's turn; older ones would continue it) or put two
 * assistant turns side by side. `session.send` refuses such a message, but a history can hold
 * one: saved by an earlier version, or by other code.
 *
 * An assistant message (a model that answered nothing: a stop without text or tool calls) is
 * left out where turns of one role merge (Anthropic, Gemini) or need not alternate (the
 * Responses API). Chat Completions cannot merge two user messages, and some servers' chat
 * templates require roles to alternate, so there it keeps its place as this text (see
 * `openai-chat.ts`), unless it is the last message.
 */
export const BLANK_MESSAGE_TEXT = "(empty message)";

/** False for text that is empty or only whitespace. */
export function hasText(text: string): boolean {
  return text.trim() !== "";
}

type UserMessage = Extract<ModelMessage, { role: "user" }>;

/**
 * The parts of a user message to send: without its blank text parts, which say nothing (and
 * which Anthropic refuses as text blocks); {@link BLANK_MESSAGE_TEXT} when nothing is
 * left. An image sent without a caption stays an image alone.
 */
export function userContent(message: UserMessage): UserMessage["content"] {
  const parts = message.content.filter((part) => part.type !== "text" || hasText(part.text));
  return parts.length > 0 ? parts : [{ type: "text", text: BLANK_MESSAGE_TEXT }];
}
