/**
 * BeamClaw's normalized messages in the shape OpenClaw clients display: `user`, `assistant`
 * and `toolResult` roles with content blocks (`text`, `image`, `file`, `thinking`, `toolCall`) and a
 * `timestamp`.
 */
import type { JsonValue, ModelMessage } from "@beamclaw/core";

/** One chat message as `chat.history` and `chat` events carry it. */
export type ChatMessage = Record<string, unknown> & { role: string; timestamp: number };

function textOf(output: JsonValue): string {
  return typeof output === "string" ? output : JSON.stringify(output);
}

/** Converts one normalized message; `undefined` for one with nothing to show. */
export function toChatMessage(message: ModelMessage, timestamp: number): ChatMessage | undefined {
  if (message.role === "user") {
    return {
      role: "user",
      content: message.content.map((part) =>
        part.type === "text"
          ? { type: "text", text: part.text }
          : {
              type: part.type,
              mimeType: part.mediaType,
              ...(part.type === "file" && part.filename !== undefined
                ? { fileName: part.filename }
                : {}),
              ...(part.url === undefined ? {} : { url: part.url }),
              ...(part.data === undefined ? {} : { omitted: true, bytes: part.data.length }),
            },
      ),
      timestamp,
    };
  }
  if (message.role === "assistant") {
    return {
      role: "assistant",
      content: message.content.map((part) => {
        if (part.type === "text") return { type: "text", text: part.text };
        if (part.type === "thinking") return { type: "thinking", thinking: part.text };
        return {
          type: "toolCall",
          id: part.toolCallId,
          name: part.toolName,
          arguments: part.input,
        };
      }),
      timestamp,
    };
  }
  const [first] = message.content;
  if (first === undefined) return undefined;
  return {
    role: "toolResult",
    toolCallId: first.toolCallId,
    toolName: first.toolName,
    content: [{ type: "text", text: textOf(first.output) }],
    isError: first.isError === true,
    timestamp,
  };
}

/** Converts a message that may hold several tool results into one chat message each. */
export function toChatMessages(message: ModelMessage, timestamp: number): ChatMessage[] {
  if (message.role !== "tool") {
    const one = toChatMessage(message, timestamp);
    return one === undefined ? [] : [one];
  }
  return message.content.flatMap((part) => {
    const one = toChatMessage({ role: "tool", content: [part] }, timestamp);
    return one === undefined ? [] : [one];
  });
}

/** An assistant chat message holding `text` (what streaming deltas and finals carry). */
export function assistantText(text: string, timestamp: number): ChatMessage {
  return { role: "assistant", content: [{ type: "text", text }], timestamp };
}

/** The last assistant message of a run's added messages, as a chat message. */
export function finalAssistantMessage(
  messages: readonly ModelMessage[],
  timestamp: number,
): ChatMessage | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    if (message.role === "assistant") return toChatMessage(message, timestamp);
  }
  return undefined;
}
