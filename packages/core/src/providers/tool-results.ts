/**
 * Every tool call answered: a rule of every model API that a conversation can break when a
 * run ends while its tools run.
 */
import type { ModelMessage, ToolCallPart, ToolResultPart } from "./types.js";

/**
 * What the model reads for a tool call that never returned (its run ended, aborted, timed out
 * or failed, while the tool ran): an error, and that the call may have taken effect all the
 * same.
 */
export const INTERRUPTED_TOOL_OUTPUT =
  "No result: the run ended before this tool call returned; it may or may not have taken effect.";

/** The error result ({@link INTERRUPTED_TOOL_OUTPUT}) of a tool call that never returned. */
export function interruptedToolResult(call: ToolCallPart): ToolResultPart {
  return {
    type: "tool-result",
    toolCallId: call.toolCallId,
    toolName: call.toolName,
    output: INTERRUPTED_TOOL_OUTPUT,
    isError: true,
  };
}

/**
 * `messages` with a result for every tool call: an assistant message whose calls are not all
 * answered by the tool message(s) right after it gets an error result
 * ({@link INTERRUPTED_TOOL_OUTPUT}) for each call left, added to the last of those messages or
 * in a tool message of its own. Every vendor refuses a conversation holding an unanswered call
 * (Anthropic: "`tool_use` ids were found without `tool_result` blocks immediately after";
 * Chat Completions: "An assistant message with 'tool_calls' must be followed by tool messages
 * responding to each 'tool_call_id'"; the Responses API: "No tool output found for function
 * call"; Gemini: "the number of function response parts is equal to the number of function
 * call parts"), so a history holding one would fail every later request. Returns `messages`
 * itself when nothing is missing.
 *
 * @example
 * ```ts
 * import { answerToolCalls, type ModelMessage } from "@beamclaw/core";
 *
 * const history: ModelMessage[] = [
 *   { role: "user", content: [{ type: "text", text: "Deploy it" }] },
 *   {
 *     role: "assistant",
 *     content: [{ type: "tool-call", toolCallId: "c1", toolName: "deploy", input: {} }],
 *   },
 * ];
 * answerToolCalls(history)[2]; // { role: "tool", content: [{ ..., toolCallId: "c1", isError: true }] }
 * ```
 */
export function answerToolCalls(messages: ModelMessage[]): ModelMessage[] {
  let out: ModelMessage[] | undefined;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    out?.push(message);
    if (message.role !== "assistant") continue;
    // The results right after it: one tool message, or several in a row.
    let end = i + 1;
    const answered = new Set<string>();
    for (let next = messages[end]; next?.role === "tool"; next = messages[++end]) {
      for (const result of next.content) answered.add(result.toolCallId);
    }
    const missing: ToolResultPart[] = [];
    for (const part of message.content) {
      if (part.type !== "tool-call" || answered.has(part.toolCallId)) continue;
      answered.add(part.toolCallId);
      missing.push(interruptedToolResult(part));
    }
    if (missing.length === 0) continue;
    out ??= messages.slice(0, i + 1);
    if (end === i + 1) {
      out.push({ role: "tool", content: missing });
    } else {
      for (let k = i + 1; k < end - 1; k++) out.push(messages[k]!);
      const last = messages[end - 1] as Extract<ModelMessage, { role: "tool" }>;
      out.push({ role: "tool", content: [...last.content, ...missing] });
    }
    i = end - 1;
  }
  return out ?? messages;
}
