import type { ApprovalGate } from "../approval.js";
import { describeBinding } from "./binding.js";
import type { ExecApprover } from "./exec-tool.js";

/**
 * An {@link ExecApprover} that asks an `ApprovalGate`: the request carries the binding's
 * exact `key` (so a remembered `allow-always` covers that binding only),
 * {@link describeBinding} as the text the person sees, and as its `input` the command, its
 * working directory, host, caller environment (`env`, when any) and standard input (`stdin`,
 * when given). A denial or timeout rejects with the
 * gate's `ApprovalDeniedError`, which the exec tool reports as an error result.
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
  options: { toolName?: string } = {},
): ExecApprover {
  const toolName = options.toolName ?? "exec";
  return async (binding, context) => {
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
}
