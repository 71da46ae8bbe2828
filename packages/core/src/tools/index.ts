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
  capToolOutput,
  checkMaxOutputBytes,
  DEFAULT_TOOL_MAX_OUTPUT_BYTES,
  MIN_TOOL_MAX_OUTPUT_BYTES,
  truncationMarker,
  utf8Prefix,
} from "./output-cap.js";
export {
  type RegisteredTool,
  SupervisedToolRunner,
  type SupervisedToolRunnerOptions,
  ToolRegistry,
} from "./registry.js";
export {
  checkToolImages,
  isToolResultWithImages,
  MAX_TOOL_RESULT_IMAGE_BYTES,
  MAX_TOOL_RESULT_IMAGES,
  type ToolResultOptions,
  type ToolResultWithImages,
  toolResult,
} from "./tool-result.js";
