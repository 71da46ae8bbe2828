export {
  APPROVALS_SCOPE,
  type ApprovalAnswerer,
  type ApprovalDecision,
  ApprovalDeniedError,
  ApprovalGate,
  type ApprovalGateOptions,
  type ApprovalMode,
  ApprovalScopeError,
  type ApprovalSubject,
  type PendingApproval,
} from "./approval.js";
export {
  type ApprovalPolicy,
  defineTool,
  isTransientError,
  type ToolConfig,
  type ToolDefinition,
} from "./define-tool.js";
export {
  type RegisteredTool,
  SupervisedToolRunner,
  type SupervisedToolRunnerOptions,
  ToolRegistry,
} from "./registry.js";
