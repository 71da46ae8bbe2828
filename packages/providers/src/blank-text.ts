/**
 * Text that says nothing (empty, or only whitespace), and the user messages made of it: the
 * rule every adapter follows, so that the same history reaches every vendor alike.
 */
import type { ModelMessage } from "@beamclaw/core";

/**
 * What a user message that says nothing is sent as. Vendors refuse a message without content
 * (Anthropic: "all messages must have non-empty content except for the optional final
 * assistant message"; Gemini: "contents.parts must not be empty"; OpenAI: an empty `content`
 * array), and leaving it out would make the turn before it the last one (Anthropic's newer
 * models and Gemini refuse a conversation that ends with the assistant's turn; older ones
 * would continue it) or put two assistant turns side by side. `session.send` refuses such a
 * message, but a history can hold one: saved by an earlier version, or by other code.
 */
export const BLANK_USER_MESSAGE_TEXT = "(empty message)";

/** False for text that is empty or only whitespace. */
export function hasText(text: string): boolean {
  return text.trim() !== "";
}

type UserMessage = Extract<ModelMessage, { role: "user" }>;

/**
 * The parts of a user message to send: without its blank text parts, which say nothing (and
 * which Anthropic refuses as text blocks); {@link BLANK_USER_MESSAGE_TEXT} when nothing is
 * left. An image sent without a caption stays an image alone.
 */
export function userContent(message: UserMessage): UserMessage["content"] {
  const parts = message.content.filter((part) => part.type !== "text" || hasText(part.text));
  return parts.length > 0 ? parts : [{ type: "text", text: BLANK_USER_MESSAGE_TEXT }];
}
