import { NotSupportedError } from "../../errors.js";
import { checkEnv, DEFAULT_EXEC_PATH } from "./env.js";
import type { ExecChild, ExecHost, ExecHostKind, ExecSpawnRequest } from "./host.js";
import type { ExecutableResolver } from "./resolve.js";

/** Options of {@link NodeHost}. */
export interface NodeHostOptions {
  /** The paired node's id. */
  nodeId: string;
}

/**
 * Runs commands on a paired remote node through the gateway. This is the interface only:
 * the transport is wired by the gateway (node pairing) work, and until then every call
 * fails with {@link NotSupportedError} — it never pretends to have run anything.
 *
 * @example
 * ```ts
 * const node = new NodeHost({ nodeId: "build-box" });
 * await node.spawn(request); // rejects with NotSupportedError (code "NOT_SUPPORTED")
 * ```
 */
export class NodeHost implements ExecHost {
  readonly kind: ExecHostKind = "node";
  readonly id: string;
  readonly path: string = DEFAULT_EXEC_PATH;
  readonly shell: string = "/bin/sh";

  constructor(options: NodeHostOptions) {
    this.id = `node:${options.nodeId}`;
  }

  resolveCwd(): string {
    throw this.#unsupported();
  }

  environment(env?: Readonly<Record<string, unknown>>): Record<string, string> {
    return checkEnv(env);
  }

  /** Programs live on the remote node. */
  readonly resolveExecutable: ExecutableResolver = () => undefined;

  spawn(_request: ExecSpawnRequest): Promise<ExecChild> {
    return Promise.reject(this.#unsupported());
  }

  #unsupported(): NotSupportedError {
    return new NotSupportedError(
      "exec-node-host",
      `running commands on node "${this.id.slice(5)}" is not available yet: the node host is wired by the gateway's node pairing`,
    );
  }
}
