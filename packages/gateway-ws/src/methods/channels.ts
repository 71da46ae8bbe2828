/**
 * Gateway methods of channel plugins (`ChannelGatewayMethod`, from `ChannelManager
 * .gatewayMethods()`): mounted beside the built-in methods, each behind its scope and its
 * params schema, and a plugin that throws answers with a protocol error.
 */
import {
  AlreadyRegisteredError,
  type ChannelGatewayMethod,
  type ChannelMethodCaller,
  ChannelNotFoundError,
  type JsonValue,
  NotSupportedError,
  PairingCodeError,
} from "@beamclaw/core";
import type { HubMethod } from "../hub.js";
import { ErrorCodes } from "../protocol/constants.js";
import { GatewayError } from "../protocol/errors.js";
import type { ParamsObject } from "../protocol/params.js";
import type { CallerInfo, GatewayMethodDefinition } from "./types.js";

/**
 * The channel methods to mount: a fixed set, or a function read at every call (a host whose
 * channels are reconfigured live passes `() => manager.gatewayMethods()`; the names mounted
 * are those it returns when the gateway is created).
 */
export type ChannelMethodSource =
  | Readonly<Record<string, ChannelGatewayMethod>>
  | (() => Readonly<Record<string, ChannelGatewayMethod>>);

const DEFAULT_SCOPE = "operator.admin";

function current(source: ChannelMethodSource, name: string): ChannelGatewayMethod {
  const method = (typeof source === "function" ? source() : source)[name];
  if (method === undefined) {
    throw new GatewayError(
      ErrorCodes.UNAVAILABLE,
      `${name} is not available: its channel is gone`,
      {
        details: { code: "SUBSYSTEM_UNAVAILABLE", subsystem: name.slice(0, name.indexOf(".")) },
      },
    );
  }
  return method;
}

/** Runs one channel method: params schema, handler, a JSON answer; failures as protocol errors. */
async function call(
  name: string,
  method: ChannelGatewayMethod,
  params: ParamsObject,
  caller: CallerInfo,
): Promise<unknown> {
  let input: unknown = params;
  if (method.params !== undefined) {
    const result = await method.params["~standard"].validate(params);
    if (result.issues !== undefined) {
      const issues = result.issues.map((issue) => ({
        message: issue.message,
        ...(issue.path === undefined
          ? {}
          : {
              path: issue.path.map((p) => String(typeof p === "object" && p !== null ? p.key : p)),
            }),
      }));
      throw new GatewayError(
        ErrorCodes.INVALID_REQUEST,
        `invalid ${name} params: ${issues
          .map((i) => (i.path === undefined ? i.message : `${i.path.join(".")}: ${i.message}`))
          .join("; ")}`,
        { details: { code: "INVALID_PARAMS", issues } },
      );
    }
    input = result.value;
  }
  const who: ChannelMethodCaller = { scopes: [...caller.scopes], clientId: caller.client.id };
  let answer: JsonValue;
  try {
    answer = await method.handler(input as JsonValue, who);
  } catch (error) {
    // What the caller named does not exist: a bad request, not a failing subsystem. Other
    // errors (an `INVALID_ARGUMENT` such as an accountId the channel does not have) are
    // answered by the hub's error shape.
    if (PairingCodeError.isInstance(error)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, error.message, {
        details: { code: error.code, channel: error.channel, requestId: error.pairingCode },
        cause: error,
      });
    }
    if (ChannelNotFoundError.isInstance(error)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, error.message, {
        details: { code: error.code, channel: error.channel },
        cause: error,
      });
    }
    // Something the channel cannot do (`channels.logout` of a channel without a login, as
    // OpenClaw answers it): retrying does not help, asking differently might.
    if (NotSupportedError.isInstance(error)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, error.message, {
        details: { code: error.code, feature: error.feature },
        cause: error,
      });
    }
    throw error;
  }
  if (answer === undefined) return { ok: true };
  let json: string | undefined;
  try {
    json = JSON.stringify(answer);
  } catch (error) {
    throw new GatewayError(ErrorCodes.UNAVAILABLE, `${name} answered something that is not JSON`, {
      details: { code: "INVALID_RESULT" },
      cause: error,
    });
  }
  return json === undefined ? { ok: true } : JSON.parse(json);
}

/**
 * One channel method as a plugin method of the hub (`GatewayServer.registerMethod`), for
 * methods added after the gateway was created. With a function as `source` the method is
 * looked up at every call; its scope is the one it has now.
 *
 * @example
 * ```ts
 * gateway.registerMethod("relay.info", channelMethodDefinition("relay.info", () => manager.gatewayMethods()));
 * ```
 */
export function channelMethodDefinition(
  name: string,
  source: ChannelMethodSource,
): GatewayMethodDefinition {
  return {
    scope: current(source, name).scope ?? DEFAULT_SCOPE,
    handler: ({ params, caller }) => call(name, current(source, name), params, caller),
  };
}

/**
 * The channel methods as hub methods, next to `builtIn`.
 *
 * @throws AlreadyRegisteredError when a channel method has the name of a built-in one.
 */
export function mountChannelMethods(
  builtIn: Readonly<Record<string, HubMethod>>,
  source: ChannelMethodSource | undefined,
): Record<string, HubMethod> {
  if (source === undefined) return {};
  const methods: Record<string, HubMethod> = {};
  for (const name of Object.keys(typeof source === "function" ? source() : source)) {
    if (Object.hasOwn(builtIn, name)) {
      throw new AlreadyRegisteredError(
        `a channel registers the gateway method "${name}", which the gateway has built in`,
        name,
      );
    }
    methods[name] = {
      scope: () => [current(source, name).scope ?? DEFAULT_SCOPE],
      handler: ({ params, caller }) => call(name, current(source, name), params, caller),
    };
  }
  return methods;
}
