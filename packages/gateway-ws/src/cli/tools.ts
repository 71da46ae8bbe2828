/**
 * The tools `beamclaw gateway` builds from `tools.*` and registers in the runtime's
 * `ToolRegistry`: `exec` and `process` (sharing one `BackgroundProcessRegistry`, started and
 * stopped with the gateway) and `web_fetch`. Agents see them through their `tools` allowlist.
 */
import { isAbsolute, resolve } from "node:path";
import {
  type AgentTool,
  type ApprovalGate,
  approveWithGate,
  BackgroundProcessRegistry,
  type BeamClawConfig,
  BubblewrapSandbox,
  createExecTool,
  createProcessTool,
  createWebFetchTool,
  DockerSandbox,
  ExecAllowlist,
  type ExecHost,
  type ExecHostKind,
  type ExecToolConfig,
  GatewayHost,
  type NodeHost,
  type ToolRegistry,
  type WebFetchToolConfig,
} from "@beamclaw/core";
import { CliError } from "./bootstrap.js";

/** What {@link startTools} built; `stop()` ends every command exec started. */
export interface ConfiguredTools {
  /** The processes of `exec` (running until `stop()`), when exec is enabled. */
  readonly processes: BackgroundProcessRegistry | undefined;
  /** The hosts `exec` offers, by kind (empty when exec is off). */
  readonly execHosts: Partial<Record<ExecHostKind, ExecHost>>;
  /** The names of the tools registered now. */
  names(): string[];
  /**
   * Applies the live part of a changed configuration: exec's allowlist and limits,
   * `tools.webFetch`. Returns a sentence per part it could not apply (that part keeps running
   * as before).
   */
  apply(next: BeamClawConfig): string[];
  /** Unregisters the tools and stops the process registry (every command it started ends). */
  stop(): Promise<void>;
}

/** Options of {@link startTools}. */
export interface ToolsOptions {
  config: BeamClawConfig;
  /** Relative `tools.exec.roots` are relative to this directory. */
  configDir: string;
  /** The runtime's tool registry. */
  tools: ToolRegistry;
  /** The runtime's approval gate; without one only allowlisted commands run. */
  approvals: ApprovalGate | undefined;
  /** Makes the host for `tools.exec.node` (wired to the gateway's node relay). */
  nodeHost(node: { nodeId: string; workdir?: string }): NodeHost;
}

const EXEC = "exec";
const PROCESS = "process";
const WEB_FETCH = "web_fetch";
/** The exec tool waits this much longer than the gate, so the gate's own timeout decides. */
const APPROVAL_SLACK_MS = 5_000;

/**
 * What the exec, process and web_fetch tools allow their text (output, content) of one
 * result, for a runner that caps a result at `resultBytes` (`tools.maxOutputBytes`): that
 * less 4 KiB for the rest of the result (at least half of it), so that the tool keeps what
 * matters (the end of a command's output, the start of a page) and the runner never cuts
 * the result's JSON from its end.
 */
export function toolTextBytes(resultBytes: number): number {
  return Math.max(Math.floor(resultBytes / 2), resultBytes - 4 * 1024);
}

/**
 * Builds the enabled tools and registers them. Exec's hosts are checked first: the roots
 * must exist and a sandbox must work here (its probe runs), else nothing is registered and a
 * `CliError` says what to fix.
 *
 * @throws CliError naming the configuration path of the problem.
 */
export async function startTools(options: ToolsOptions): Promise<ConfiguredTools> {
  const { tools, approvals } = options;
  let exec = options.config.tools.exec;
  let webFetch = options.config.tools.webFetch;
  let resultBytes = options.config.tools.maxOutputBytes;
  let processes: BackgroundProcessRegistry | undefined;
  let execHosts: Partial<Record<ExecHostKind, ExecHost>> = {};

  const execTool = (settings: ExecToolConfig): AgentTool => {
    let allowlist: ExecAllowlist;
    try {
      allowlist = new ExecAllowlist(settings.allowlist);
    } catch (error) {
      throw new CliError(`tools.exec.allowlist: ${(error as Error).message}`);
    }
    const tool = createExecTool({
      registry: processes!,
      hosts: execHosts,
      defaultHost: settings.host,
      allowlist,
      ...(approvals === undefined
        ? {}
        : {
            approve: approveWithGate(approvals),
            approvalTimeoutMs: approvals.timeoutMs + APPROVAL_SLACK_MS,
          }),
      yieldAfterMs: settings.yieldAfterMs,
      timeoutMs: settings.timeoutMs,
      maxOutputBytes: toolTextBytes(resultBytes),
    });
    // Exec asks the gate itself, bound to the exact command: the runner must not ask again
    // for the tool as a whole, nor retry a call (that would ask again).
    const registered: AgentTool & { approval: "never"; maxRetries: number } = {
      ...tool,
      approval: "never",
      maxRetries: 0,
    };
    return registered;
  };

  const webFetchTool = (settings: WebFetchToolConfig): AgentTool => {
    try {
      return createWebFetchTool({
        allow: settings.allow,
        maxBytes: settings.maxBytes,
        timeoutMs: settings.timeoutMs,
        maxOutputBytes: toolTextBytes(resultBytes),
      });
    } catch (error) {
      throw new CliError(`tools.webFetch: ${(error as Error).message}`);
    }
  };

  // The process tool only reaches commands the same session started after their approval;
  // a write to one that was asked about is asked about again (exec's gate, through
  // `approveWithGate(...).write`), so it waits as long as exec does for its answer.
  const processTool = (
    registry: BackgroundProcessRegistry,
  ): AgentTool & { approval: "never"; maxRetries: number } => ({
    ...createProcessTool(registry, {
      maxOutputBytes: toolTextBytes(resultBytes),
      ...(approvals === undefined
        ? {}
        : { approvalTimeoutMs: approvals.timeoutMs + APPROVAL_SLACK_MS }),
    }),
    approval: "never",
    maxRetries: 0,
  });

  const replace = (name: string, tool: AgentTool | undefined) => {
    tools.unregister(name);
    if (tool !== undefined) tools.register(tool);
  };

  const stop = async () => {
    for (const name of [EXEC, PROCESS, WEB_FETCH]) tools.unregister(name);
    await processes?.stop();
  };

  try {
    if (exec.enabled) {
      execHosts = await buildExecHosts(exec, options);
      processes = new BackgroundProcessRegistry({
        name: "exec-processes",
        yieldAfterMs: exec.yieldAfterMs,
        timeoutMs: exec.timeoutMs,
      });
      await processes.start();
      const built = execTool(exec);
      replace(EXEC, built);
      replace(PROCESS, processTool(processes));
    }
    if (webFetch.enabled) replace(WEB_FETCH, webFetchTool(webFetch));
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    processes,
    execHosts,
    names: () => tools.names().filter((n) => n === EXEC || n === PROCESS || n === WEB_FETCH),
    apply(next) {
      const problems: string[] = [];
      // The runtime's cap follows the file live (`runtime.reconfigure`): the tools' with it.
      const capChanged = next.tools.maxOutputBytes !== resultBytes;

      resultBytes = next.tools.maxOutputBytes;
      if (capChanged && processes !== undefined) replace(PROCESS, processTool(processes));
      const nextExec = next.tools.exec;
      if (
        processes !== undefined &&
        (capChanged ||
          JSON.stringify([exec.allowlist, exec.yieldAfterMs, exec.timeoutMs]) !==
            JSON.stringify([nextExec.allowlist, nextExec.yieldAfterMs, nextExec.timeoutMs]))
      ) {
        try {
          replace(EXEC, execTool({ ...exec, ...pickLive(nextExec) }));
          exec = { ...exec, ...pickLive(nextExec) };
        } catch (error) {
          problems.push(`tools.exec not applied: ${(error as Error).message}`);
        }
      }
      const nextFetch = next.tools.webFetch;
      if (
        (capChanged && nextFetch.enabled) ||
        JSON.stringify(webFetch) !== JSON.stringify(nextFetch)
      ) {
        try {
          replace(WEB_FETCH, nextFetch.enabled ? webFetchTool(nextFetch) : undefined);
          webFetch = nextFetch;
        } catch (error) {
          problems.push(`tools.webFetch not applied: ${(error as Error).message}`);
        }
      }
      return problems;
    },
    stop,
  };
}

function pickLive(exec: ExecToolConfig) {
  return { allowlist: exec.allowlist, yieldAfterMs: exec.yieldAfterMs, timeoutMs: exec.timeoutMs };
}

/**
 * The hosts exec offers: `host`, plus `sandbox` when a sandbox section is present and `node`
 * when a node section is present. The gateway host (no isolation) only when it is `host`.
 * The roots must exist and the sandbox must work here (its probe runs).
 *
 * @throws CliError naming the configuration path of the problem.
 */
export async function buildExecHosts(
  exec: ExecToolConfig,
  options: Pick<ToolsOptions, "configDir" | "nodeHost">,
): Promise<Partial<Record<ExecHostKind, ExecHost>>> {
  const roots = exec.roots.map((r) => (isAbsolute(r) ? r : resolve(options.configDir, r)));
  const hosts: Partial<Record<ExecHostKind, ExecHost>> = {};
  if (exec.host === "gateway") hosts.gateway = new GatewayHost({ roots });
  if (exec.host === "sandbox" || exec.sandbox !== undefined) {
    const sandbox =
      exec.sandbox?.driver === "docker"
        ? new DockerSandbox({ image: exec.sandbox.image!, roots })
        : new BubblewrapSandbox({ roots });
    try {
      await sandbox.probe();
    } catch (error) {
      throw new CliError(
        `tools.exec.sandbox: ${(error as Error).message}. Fix the sandbox, or choose another tools.exec.host`,
      );
    }
    hosts.sandbox = sandbox;
  }
  for (const host of Object.values(hosts)) {
    try {
      host.resolveCwd();
    } catch (error) {
      throw new CliError(`tools.exec.roots: ${(error as Error).message}`);
    }
  }
  if (exec.host === "node" || exec.node !== undefined) {
    const node = exec.node!;
    try {
      hosts.node = options.nodeHost({
        nodeId: node.nodeId,
        ...(node.workdir === undefined ? {} : { workdir: node.workdir }),
      });
    } catch (error) {
      throw new CliError(`tools.exec.node: ${(error as Error).message}`);
    }
  }
  return hosts;
}
