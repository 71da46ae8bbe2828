/**
 * `@beamclaw/gateway-ws`: BeamClaw's standalone gateway. OpenClaw's gateway WebSocket
 * protocol (v4, v3 accepted), OpenAI-compatible HTTP, health probes and the dashboard on one
 * port, in front of an `AgentRuntime`.
 *
 * @packageDocumentation
 */

export {
  buildDeviceAuthPayloadV2,
  buildDeviceAuthPayloadV3,
  createDeviceIdentity,
  type DeviceAuthPayloadFields,
  type DeviceIdentity,
  deriveDeviceId,
  signDeviceChallenge,
  verifyDeviceSignature,
} from "./auth/device-identity.js";
export type { GatewayAuthSettings } from "./auth/handshake.js";
export type { PairingRequestLimits } from "./auth/pairing.js";
export type { AuthRateLimitSettings } from "./auth/rate-limit.js";
export { decodeSetupCode } from "./auth/setup-codes.js";
export {
  type ChannelTargetOptions,
  channelTargetOf,
  cronChannelDeliver,
  type GatewayChannelDelivery,
} from "./channel-delivery.js";
export type { ConnectionCloseInfo } from "./connection.js";
export type { GatewayCronBackend } from "./cron.js";
export { cronBackend } from "./cron-adapter.js";
export type { HeartbeatEvent, HeartbeatSettings } from "./heartbeat.js";
export { wrapExternalContent } from "./hooks/external-content.js";
export type {
  GatewayHooksOptions,
  HookCompletion,
  HookTransform,
  HookTransformContext,
  HookTransformResult,
} from "./hooks/ingress.js";
export { renderTemplate as renderHookTemplate } from "./hooks/template.js";
export { DEFAULT_LIVENESS, type LivenessSettings } from "./liveness.js";
export type { GatewayLogSink, LogsTail } from "./logs.js";
export { type ChannelMethodSource, channelMethodDefinition } from "./methods/channels.js";
export type {
  CallerInfo,
  GatewayMethodDefinition,
  GatewayMethodHandler,
} from "./methods/types.js";
export {
  createNodeExecHost,
  NODE_RELAY_MARGIN_MS,
  type NodeExecHostOptions,
  type NodeRelay,
} from "./node-exec.js";
export type {
  ConnectedNode,
  NodeInvokeCancelEvent,
  NodeInvokeCancelReason,
  NodeInvokeResult,
} from "./nodes.js";
export {
  CloseCodes,
  type ErrorCode,
  ErrorCodes,
  type GatewayRole,
  MIN_PROTOCOL_VERSION,
  MIN_REQUESTS_PER_SECOND,
  PRE_HANDSHAKE_MAX_BYTES,
  PROTOCOL_VERSION,
  Scopes,
} from "./protocol/constants.js";
export { type ErrorShape, GatewayError, type GatewayErrorOptions } from "./protocol/errors.js";
export {
  type ConnectionSummary,
  createGateway,
  GATEWAY_VERSION,
  GatewayServer,
  type GatewayServerOptions,
  type GatewayStopOptions,
} from "./server.js";
export { buildSkillsReport, type GatewaySkillsReport } from "./skills.js";
export {
  createTenantGateway,
  TenantGateway,
  type TenantGatewayOptions,
  type TenantGatewayTenant,
} from "./tenant-gateway.js";
