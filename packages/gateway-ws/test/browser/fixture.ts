/**
 * A real gateway for the dashboard tests: an `AgentRuntime` over a `MemoryStore`, a scripted
 * provider whose first turn calls a tool that needs approval and whose second turn streams
 * its answer in steps the test releases, and `createGateway` on 127.0.0.1.
 */
import { AgentRuntime, createProviderChain, defineTool, MemoryStore } from "@beamclaw/core";
import { createScriptedProvider, type ScriptedProvider } from "@beamclaw/core/testing";
import { z } from "zod";
import { createGateway, type GatewayCronBackend, type GatewayServer } from "../../src/index.js";

/** The token the gateway accepts. */
export const TOKEN = "dashboard-test-token-7f3a";

/** A promise with its resolve function, to hold a stream until the test lets it go. */
export interface Gate {
  promise: Promise<void>;
  open(): void;
}

export function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** What the first turn's tool call asks for: markup in it must reach the page as text. */
export const DEPLOY_INPUT = { target: "staging", note: "<b>not bold</b><img src=x>" };

/** The one cron job the gateway's cron service lists. */
export const CRON_JOB = {
  id: "nightly-report",
  name: "Nightly report",
  enabled: true,
  createdAtMs: 1_700_000_000_000,
  updatedAtMs: 1_700_000_000_000,
  schedule: { kind: "cron", expr: "0 2 * * *", tz: "UTC" },
  sessionTarget: "isolated",
  wakeMode: "now",
  payload: { kind: "agentTurn", message: "Write the nightly report" },
  state: { nextRunAtMs: 1_900_000_000_000 },
};

/**
 * A cron service as the gateway drives it (BeamClaw's core has none yet): lists
 * {@link CRON_JOB} and records `cron.run` calls.
 */
function cronBackend(runs: Array<{ id: string; mode: string }>): GatewayCronBackend {
  const refuse = () => Promise.reject(new Error("not supported by the test cron service"));
  return {
    list: async () => ({ jobs: [CRON_JOB], total: 1 }),
    status: async () => ({ enabled: true, jobs: 1 }),
    add: refuse,
    update: refuse,
    remove: refuse,
    run: async (id, mode) => {
      runs.push({ id, mode });
      return { ok: true, ran: true };
    },
    runs: async () => ({ entries: [] }),
  };
}

/** The start of the third answer, which never finishes on its own (the test stops it). */
export const ENDLESS_START = "Let me think about that";

/** The answers of the Regenerate / Edit last message test, in order. */
export const REWIND_ANSWERS = [
  "Paris is the capital.",
  "The capital of France is Paris.",
  "Berlin is the capital.",
] as const;

/** The streamed answer, chunk by chunk, and the whole of it. */
/** The main agent's identity: its answers are signed with it. */
export const AGENT_NAME = "Deploybot";
export const AGENT_EMOJI = "🚀";

export const ANSWER_CHUNKS = ["Deployed ", "to staging ", "in 42 s."] as const;
export const ANSWER = ANSWER_CHUNKS.join("");

export interface DashboardGateway {
  runtime: AgentRuntime;
  provider: ScriptedProvider;
  gateway: GatewayServer;
  baseUrl: string;
  port: number;
  /** Arguments of each time the `deploy` tool actually ran. */
  deployCalls: Array<{ target: string }>;
  /** Each `cron.run` the cron service received. */
  cronRuns: Array<{ id: string; mode: string }>;
  /** Held after the answer's first chunk until opened. */
  midStream: Gate;
  /** Starts a new gateway for the same runtime on the same port (after `gateway.stop()`). */
  restartGateway(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDashboardGateway(): Promise<DashboardGateway> {
  const midStream = gate();
  const deployCalls: Array<{ target: string }> = [];
  const cronRuns: Array<{ id: string; mode: string }> = [];
  const cron = cronBackend(cronRuns);
  const deploy = defineTool({
    name: "deploy",
    description: "Deploys the current build to an environment",
    parameters: z.object({ target: z.string(), note: z.string().optional() }),
    approval: "always",
    execute: ({ target }) => {
      deployCalls.push({ target });
      return { deployed: target };
    },
  });
  const provider = createScriptedProvider([
    {
      toolCalls: [{ toolName: "deploy", input: DEPLOY_INPUT }],
      usage: { inputTokens: 30, outputTokens: 8 },
    },
    {
      events: [
        { type: "response-start", model: "test-model" },
        { type: "text-delta", text: ANSWER_CHUNKS[0] },
        { type: "wait", until: midStream.promise },
        { type: "text-delta", text: ANSWER_CHUNKS[1] },
        { type: "text-delta", text: ANSWER_CHUNKS[2] },
        { type: "usage", usage: { inputTokens: 50, outputTokens: 9 } },
        { type: "finish", reason: "stop" },
      ],
    },
    {
      events: [
        { type: "response-start", model: "test-model" },
        { type: "text-delta", text: ENDLESS_START },
        // Held until the run is aborted (the wait honours the call's signal).
        { type: "wait", until: new Promise<never>(() => undefined) },
        { type: "finish", reason: "stop" },
      ],
    },
    // Regenerate and edit: an answer, the same question answered again, an edited one.
    ...REWIND_ANSWERS.map((text) => ({ text })),
  ]);
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: ["scripted/test-model"] }),
    agents: [
      {
        id: "main",
        model: "scripted/test-model",
        tools: ["deploy"],
        identity: { name: AGENT_NAME, emoji: AGENT_EMOJI },
      },
    ],
    tools: [deploy],
    approvals: { mode: "always" },
  });
  await runtime.start();
  const make = (port: number) =>
    createGateway({
      runtime,
      cron,
      host: "127.0.0.1",
      port,
      auth: { mode: "token", token: TOKEN },
    });
  let gateway = make(0);
  const { port } = await gateway.start();
  const fixture: DashboardGateway = {
    runtime,
    provider,
    gateway,
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    deployCalls,
    cronRuns,
    midStream,
    async restartGateway() {
      gateway = make(port);
      fixture.gateway = gateway;
      await gateway.start();
    },
    async stop() {
      midStream.open();
      await gateway.stop();
      await runtime.stop();
      await store.close();
    },
  };
  return fixture;
}
