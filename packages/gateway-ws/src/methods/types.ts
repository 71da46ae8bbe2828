import type { ErrorShape } from "../protocol/errors.js";
import type { ParamsObject } from "../protocol/params.js";

/** Who is calling, as a method sees it. */
export interface CallerInfo {
  connId: string;
  role: "operator" | "node";
  scopes: ReadonlySet<string>;
  client: {
    id: string;
    version: string;
    platform: string;
    mode: string;
    displayName?: string;
    instanceId?: string;
  };
  deviceId: string | undefined;
  authMethod: string;
  isLoopback: boolean;
  /** The URL the caller reached the gateway at (`ws://host:port`), when its request said. */
  gatewayUrl?: string;
}

/**
 * The handler of a method registered by a channel plugin or host: gets the params (an object)
 * and the caller; returns the result payload or throws (a `GatewayError` keeps its code;
 * anything else becomes `UNAVAILABLE`).
 */
export type GatewayMethodHandler = (call: {
  method: string;
  params: ParamsObject;
  caller: CallerInfo;
  /** Aborts when the caller disconnects. */
  signal: AbortSignal;
}) => unknown | Promise<unknown>;

/** A method a plugin adds: its scope (`operator.read`, ...) and handler. */
export interface GatewayMethodDefinition {
  /** The scope a caller needs; `node` for methods only nodes may call. */
  scope: string;
  handler: GatewayMethodHandler;
}

/** What an internal method handler is given (the hub is passed separately). */
export interface MethodCall {
  method: string;
  id: string;
  params: ParamsObject;
  caller: CallerInfo;
  signal: AbortSignal;
  /**
   * The request frame's W3C Trace Context `traceparent`, when it sent a valid one (an invalid
   * one is ignored, as the specification asks): a message the method sends to a session is
   * sent with it (`SendOptions.traceparent`), so its run joins the caller's trace.
   */
  traceparent?: string;
  /** Sends another response with the same id (the second, final answer of `agent`). */
  respondAgain(ok: boolean, payload?: unknown, error?: ErrorShape): void;
}
