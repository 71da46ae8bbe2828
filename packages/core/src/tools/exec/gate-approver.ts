import type { ApprovalGate } from "../approval.js";
import { describeBinding } from "./binding.js";
import {
  describeWrite,
  type ExecApprover,
  type ExecWriteApprover,
  type ExecWriteRequest,
} from "./exec-tool.js";

/**
 * An {@link ExecApprover} that asks an `ApprovalGate`: the request carries the binding's
 * exact `key` (so a remembered `allow-always` covers that binding only),
 * {@link describeBinding} as the text the person sees, and as its `input` the command, its
 * working directory, host, caller environment (`env`, when any) and standard input (`stdin`,
 * when given). A denial or timeout rejects with the
 * gate's `ApprovalDeniedError`, which the exec tool reports as an error result.
 *
 * Its `write` asks the same gate about each `write` the `process` tool makes to a command
 * that needed an approval: tool `process` (or `processToolName`), key
 * `exec-write:<request key>` (an `allow-always` covers that exact data to that exact command,
 * for the session), {@link describeWrite} as the text, and as `input` the process `slug`,
 * the approved `command`, `cwd`, `host`, the exact `data` and `eof`. A gate in mode `off`
 * allows every write, as it allows every command.
 *
 * The gate remembers `allow-always` itself (per session), so this approver always answers
 * `allow-once` to the exec tool: one memory, one scope.
 *
 * @example
 * ```ts
 * const gate = new ApprovalGate({ store: store.approvals, mode: "on-miss" });
 * const exec = createExecTool({ registry, hosts, approve: approveWithGate(gate) });
 * ```
 */
export function approveWithGate(
  gate: Pick<ApprovalGate, "check">,
  options: { toolName?: string; processToolName?: string } = {},
): ExecApprover & { readonly write: ExecWriteApprover } {
  const toolName = options.toolName ?? "exec";
  const processToolName = options.processToolName ?? "process";
  const approve: ExecApprover = async (binding, context) => {
    await gate.check(
      {
        sessionKey: context.sessionKey,
        runId: context.runId,
        toolCallId: context.toolCallId,
        toolName,
        input: {
          command: binding.command,
          cwd: binding.cwd,
          host: binding.host,
          // What the command runs with besides its text: part of what is approved.
          ...(Object.keys(binding.env).length > 0 ? { env: { ...binding.env } } : {}),
          ...(binding.stdin === undefined ? {} : { stdin: binding.stdin }),
        },
        key: `exec:${binding.key}`,
        display: describeBinding(binding),
      },
      (event) => context.emit(event),
      context.signal,
    );
    return "allow-once" as const;
  };
  const write: ExecWriteApprover = async (request: ExecWriteRequest, context) => {
    await gate.check(
      {
        sessionKey: context.sessionKey,
        runId: context.runId,
        toolCallId: context.toolCallId,
        toolName: processToolName,
        input: {
          slug: request.slug,
          command: request.binding.command,
          cwd: request.binding.cwd,
          host: request.binding.host,
          data: request.data,
          eof: request.eof,
        },
        key: `exec-write:${request.key}`,
        display: describeWrite(request),
      },
      (event) => context.emit(event),
      context.signal,
    );
    return "allow-once" as const;
  };
  return Object.assign(approve, { write });
}
