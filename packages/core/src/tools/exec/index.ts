/**
 * The exec subsystem: the `exec` and `process` tools, approval bound to the exact command
 * (parser, binding, allowlist), the environment blocklist, execution hosts (gateway,
 * bubblewrap, Docker, remote node), and the {@link BackgroundProcessRegistry}.
 *
 * @packageDocumentation
 */
export {
  DEFAULT_SAFE_BUILTINS,
  ExecAllowlist,
  type ExecAllowlistEntry,
  type ExecAllowlistOptions,
  type ExecAllowlistVerdict,
  matchArguments,
} from "./allowlist.js";
export {
  BackgroundProcessRegistry,
  type BackgroundProcessRegistryOptions,
  type BackgroundSpawnRequest,
  DEFAULT_EXEC_TIMEOUT_MS,
  DEFAULT_FINISHED_TTL_MS,
  DEFAULT_KILL_GRACE_MS,
  DEFAULT_OUTPUT_LIMIT_BYTES,
  DEFAULT_YIELD_AFTER_MS,
  type ProcessPoll,
  type ProcessSnapshot,
  type ProcessWrite,
  type ProcessWriteGate,
} from "./background.js";
export { type BindOptions, bindCommand, describeBinding } from "./binding.js";
export type {
  ExecBinding,
  ExecDynamicKind,
  ExecDynamicReason,
  ExecInvocation,
} from "./binding-types.js";
export { BubblewrapSandbox, type BubblewrapSandboxOptions } from "./bubblewrap-sandbox.js";
export { DockerSandbox, type DockerSandboxOptions } from "./docker-sandbox.js";
export {
  BLOCKED_ENV_NAMES,
  BLOCKED_ENV_PREFIXES,
  checkEnv,
  DEFAULT_EXEC_PATH,
  DEFAULT_INHERITED_ENV,
  isBlockedEnvName,
  type SanitizeEnvOptions,
  sanitizeEnv,
} from "./env.js";
export {
  createExecTool,
  DEFAULT_EXEC_MAX_OUTPUT_BYTES,
  describeWrite,
  type ExecApprovalDecision,
  type ExecApprovalMemory,
  type ExecApprover,
  type ExecToolInput,
  type ExecToolOptions,
  type ExecWriteApprover,
  type ExecWriteRequest,
  InMemoryExecApprovals,
} from "./exec-tool.js";
export { approveWithGate } from "./gate-approver.js";
export { GatewayHost, type LocalHostOptions } from "./gateway-host.js";
export type {
  ExecChild,
  ExecHost,
  ExecHostKind,
  ExecProcess,
  ExecSpawnRequest,
} from "./host.js";
export {
  NODE_TIMEOUT_MARGIN_MS,
  NodeHost,
  type NodeHostOptions,
  type NodeInvoke,
  type NodeRunRequest,
  type NodeRunResult,
} from "./node-host.js";
export { OutputRing, type OutputStream, type TailOptions } from "./output-ring.js";
export { createProcessTool, type ProcessToolOptions } from "./process-tool.js";
export { PROCESS_TREE_ENV, ProcessTree } from "./process-tree.js";
export {
  type ExecutableResolver,
  findExecutable,
  type ResolvedCommand,
  resolveCommand,
  SHELL_BUILTINS,
} from "./resolve.js";
export {
  literalOf,
  parseShell,
  type ShellAndOr,
  type ShellAssignment,
  type ShellCase,
  type ShellCommand,
  type ShellFor,
  type ShellFunction,
  type ShellGroup,
  type ShellHereDoc,
  type ShellIf,
  type ShellList,
  type ShellListItem,
  type ShellLoop,
  type ShellParseOptions,
  type ShellPipeline,
  type ShellRedirect,
  type ShellRedirectOp,
  type ShellSimpleCommand,
  type ShellSubshell,
  type ShellWord,
  type ShellWordPart,
} from "./shell-parse.js";
export { quoteShellWord, serializeShell } from "./shell-serialize.js";
export { WorkdirRoots } from "./workdir.js";
