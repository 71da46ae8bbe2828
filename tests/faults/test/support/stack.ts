/**
 * A real gateway in this process: `createGateway` on 127.0.0.1 (port 0) in front of an
 * `AgentRuntime` over a real store (`@beamclaw/store-fs` in a directory, or any `Store`), whose
 * model is `@beamclaw/providers`' OpenAI-compatible adapter talking HTTP to a
 * {@link ModelServer}, through a `ProviderChain`. `stop()` stops the gateway, the runtime and
 * the store, in that order.
 */
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  createProviderChain,
  type ProviderChainOptions,
  type Store,
} from "@beamclaw/core";
import { createGateway, type GatewayServer } from "@beamclaw/gateway-ws";
import { createOpenAICompatibleProvider } from "@beamclaw/providers";
import { createFsStore } from "@beamclaw/store-fs";
import type { ModelServer } from "./model-server.js";

export const TOKEN = "fault-test-token-0123456789";

export interface Stack {
  url: string;
  port: number;
  gateway: GatewayServer;
  runtime: AgentRuntime;
  store: Store;
  stop(): Promise<void>;
}

export interface StackOptions {
  model: ModelServer;
  /** A store directory (store-fs, fsync on) or a store to open. */
  store: string | Store;
  /** Provider options: the header timeout. Default 10 s. */
  providerTimeoutMs?: number;
  /** Chain retries. Default 2 attempts, 50 ms base delay. */
  retry?: ProviderChainOptions["retry"];
  runtime?: Partial<AgentRuntimeOptions>;
}

const stacks: Stack[] = [];

/** Stops every stack still running (call from `afterEach`). */
export async function stopAllStacks(): Promise<void> {
  for (const stack of stacks.splice(0).reverse()) await stack.stop();
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const store =
    typeof options.store === "string" ? createFsStore({ dir: options.store }) : options.store;
  await store.open();
  const provider = createOpenAICompatibleProvider({
    id: "local",
    baseUrl: options.model.baseUrl,
    timeoutMs: options.providerTimeoutMs ?? 10_000,
  });
  const models = createProviderChain({
    providers: [provider],
    retry: options.retry ?? { maxAttempts: 2, baseDelayMs: 50 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({
    store,
    models,
    agents: [{ id: "main", model: "local/fault-model" }],
    ...options.runtime,
  });
  await runtime.start();
  const gateway = createGateway({
    runtime,
    models,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    dashboardDir: false,
  });
  const { port } = await gateway.start();
  let stopped = false;
  const stack: Stack = {
    url: `ws://127.0.0.1:${port}`,
    port,
    gateway,
    runtime,
    store,
    async stop() {
      if (stopped) return;
      stopped = true;
      await gateway.stop();
      await runtime.stop();
      await store.close().catch(() => undefined);
    },
  };
  stacks.push(stack);
  return stack;
}
