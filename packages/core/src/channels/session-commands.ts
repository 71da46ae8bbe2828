/**
 * What a session command does (`/new`, `/stop`, `/status`, `/think`, `/compact`), apart from
 * where it was typed: the `ChannelManager` answers in the chat it came from, the gateway's
 * `chat.send` as the answer of the message.
 */
import type { AgentRuntime } from "../sessions/runtime.js";
import { errorInfo } from "../sessions/types.js";
import { type ChannelTexts, defaultChannelTexts, type SessionCommand } from "./texts.js";

/**
 * Carries out `command` (from {@link parseSessionCommand}) on session `sessionKey` and gives
 * the answer to show, in `texts` (default English): `/new` resets the session, `/stop` aborts
 * its active run, `/status` describes it, `/think` shows or sets its thinking level,
 * `/compact` summarizes its older turns (a failure is answered, not thrown).
 *
 * @example
 * ```ts
 * const command = parseSessionCommand("/think high");
 * if (command) console.log(await runSessionCommand(runtime, "agent:main:main", command));
 * ```
 */
export async function runSessionCommand(
  runtime: AgentRuntime,
  sessionKey: string,
  command: SessionCommand,
  texts: ChannelTexts = defaultChannelTexts,
): Promise<string> {
  const session = runtime.session(sessionKey);
  const agent = runtime.agents.find((a) => a.id === session.agentId);
  switch (command.kind) {
    case "new":
      await session.reset();
      return texts.sessionReset();
    case "stop": {
      const { activeRunId } = await session.info();
      const stopped = activeRunId !== undefined && (await session.abort(activeRunId));
      return texts.runStopped(stopped);
    }
    case "status": {
      const info = await session.info();
      const m = info.metadata;
      return texts.sessionStatus({
        model: m.modelOverride ?? agent?.model ?? "?",
        thinkingLevel: m.thinkingLevel ?? agent?.thinking ?? "off",
        running: info.activeRunId !== undefined,
        queued: info.queued,
        runs: m.runs,
        inputTokens: m.inputTokens,
        outputTokens: m.outputTokens,
        costUsd: m.costUsd,
      });
    }
    case "think":
      if (command.invalid !== undefined) return texts.thinkingUsage(command.invalid);
      if (command.level === undefined) {
        const { metadata } = await session.info();
        return texts.thinkingLevel(metadata.thinkingLevel ?? agent?.thinking ?? "off", false);
      }
      await session.patch({ thinkingLevel: command.level });
      return texts.thinkingLevel(command.level, true);
    case "compact":
      try {
        const result = await session.compact(
          command.instructions === undefined ? {} : { instructions: command.instructions },
        );
        return texts.compacted(result.summarizedMessages);
      } catch (error) {
        return texts.runFailed(errorInfo(error));
      }
  }
}
