import { isIP } from "node:net";
import { z } from "zod";
import { CHANNEL_ID_PATTERN } from "../channels/validate.js";
import { type CronSchedule, compileSchedule } from "../cron/schedule.js";
import { compileActiveHours } from "../heartbeat/active-hours.js";
import { AgentIdentitySchema } from "../sessions/identity.js";
import { AGENT_ID_PATTERN } from "../sessions/session-key.js";
import { MAX_RUN_TIMEOUT_MS } from "../sessions/types.js";

const positiveMs = z.number().int().positive();
const DAY_MS = 86_400_000;
/** A wait a timer holds: at most 2^31-1 ms (about 24.8 days); a longer one would fire at once. */
const timerMs = positiveMs.max(2_147_483_647);
const modelRef = z.string().regex(/^[^/\s]+\/\S+$/, 'a model reference "provider/model"');

const agentFields = {
  model: modelRef,
  fallbacks: z.array(modelRef).default([]),
  systemPrompt: z.string().optional(),
  /**
   * Skills (from `skills.dirs`) in this agent's prompt: names, `["*"]` or omitted for every
   * eligible skill, `[]` for none. Gated (ineligible) skills are never added.
   */
  skills: z.array(z.string()).optional(),
  /** Tool allowlist; `["*"]` for all. */
  tools: z.array(z.string()).default([]),
  maxSteps: z.number().int().min(1).max(1000).default(16),
  /** Time limit of one run, in ms (see `AgentDefinition.timeoutMs`). Default: none. */
  timeoutMs: positiveMs.max(MAX_RUN_TIMEOUT_MS).optional(),
  thinking: z.enum(["off", "minimal", "low", "medium", "high"]).optional(),
  maxOutputTokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
  /** Token budget of one model request (see `AgentDefinition.contextTokens`). Default: none. */
  contextTokens: z.number().int().positive().optional(),
  /** Compaction by itself near the context window (see `AgentDefinition.autoCompact`). */
  autoCompact: z
    .union([
      z.boolean(),
      z
        .object({
          thresholdTokens: z.number().int().positive().optional(),
          keepTurns: z.number().int().min(0).max(1000).optional(),
        })
        .strict(),
    ])
    .optional(),
  /**
   * Every answer of this agent as JSON conforming to a JSON Schema of an object (see
   * `AgentDefinition.output`). Default: free text.
   */
  output: z
    .object({
      schema: z
        .record(z.string(), z.unknown())
        .refine(
          (schema) => schema.type === "object",
          'a JSON Schema of an object (type: "object")',
        ),
      name: z
        .string()
        .regex(/^[a-zA-Z0-9_-]{1,64}$/)
        .optional(),
      description: z.string().optional(),
      strict: z.boolean().optional(),
      retries: z.number().int().min(0).max(5).optional(),
    })
    .strict()
    .optional(),
  /** How clients show the agent (see `AgentDefinition.identity`). */
  identity: AgentIdentitySchema.optional(),
  subagents: z
    .object({
      maxDepth: z.number().int().min(1).max(5).default(1),
      maxChildren: z.number().int().min(1).default(8),
      maxConcurrent: z.number().int().min(1).default(4),
      timeoutMs: positiveMs.default(300_000),
      agentId: z.string().optional(),
    })
    .strict()
    .optional(),
};

const agentId = z
  .string()
  .regex(AGENT_ID_PATTERN, `an agent id matching ${AGENT_ID_PATTERN.source}`);

/** One agent (in the list form, with its `id`). */
export const AgentConfigSchema = z.object({ id: agentId, ...agentFields }).strict();

/**
 * Agents, as a list (`- id: main`) or as a map keyed by id (`main: { model: ... }`); both
 * validate to the list form.
 */
const AgentsSchema = z.preprocess(
  (value) =>
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? Object.entries(value).map(([id, agent]) => ({ id, ...(agent as object) }))
      : value,
  z.array(AgentConfigSchema).min(1, "at least one agent"),
);

/** The input forms of `agents`, for the editor schema (validation goes through the list form). */
const AgentsInputSchema = z.union([
  z.array(AgentConfigSchema).min(1),
  z.record(agentId, z.object(agentFields).strict()),
]);

/** A provider endpoint. */
export const ProviderConfigSchema = z
  .object({
    kind: z.enum(["anthropic", "openai", "openai-responses", "openai-compatible", "google"]),
    apiKey: z.string().optional(),
    baseUrl: z.string().url().optional(),
    headers: z.record(z.string(), z.string()).default({}),
    timeoutMs: positiveMs.optional(),
    /**
     * Prompt caching. `anthropic`: on by default; `false` sends no cache breakpoints, or
     * `{ prefixTtl, conversationTtl }` ("5m" or "1h") sets their lifetimes. OpenAI kinds:
     * whether requests carry a `prompt_cache_key` (default true for `openai` and
     * `openai-responses`, false for `openai-compatible`). `google` takes none: Gemini caches
     * repeated prompt prefixes by itself.
     */
    promptCache: z
      .union([
        z.boolean(),
        z
          .object({
            prefixTtl: z.enum(["5m", "1h"]).optional(),
            conversationTtl: z.enum(["5m", "1h"]).optional(),
          })
          .strict(),
      ])
      .optional(),
    /**
     * `openai-compatible` only: whether a run's structured `output` is sent as
     * `response_format` (default true); false for a server that rejects it (the answer is
     * still validated).
     */
    structuredOutputs: z.boolean().optional(),
    /**
     * `google` only: call the Gemini models of Vertex AI. `{ project, location }` (location
     * default `global`) with an `apiKey` bound to a service account, or `{}` for express mode
     * (the key alone). OAuth access tokens are given in code (`createGoogleProvider`).
     */
    vertex: z
      .object({
        project: z
          .string()
          .regex(/^[a-z][a-z0-9-]{0,62}$/, "a Google Cloud project id")
          .optional(),
        location: z
          .string()
          .regex(/^[a-z][a-z0-9-]{0,62}$/, "a Google Cloud location, e.g. us-central1")
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((provider, ctx) => {
    if (provider.vertex !== undefined && provider.kind !== "google") {
      ctx.addIssue({
        code: "custom",
        path: ["vertex"],
        message: "only a google provider takes vertex",
      });
    }
    if (provider.vertex?.location !== undefined && provider.vertex.project === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["vertex", "location"],
        message: "a location needs a project (express mode has no location)",
      });
    }
    if (provider.structuredOutputs !== undefined && provider.kind !== "openai-compatible") {
      ctx.addIssue({
        code: "custom",
        path: ["structuredOutputs"],
        message: "only an openai-compatible provider takes structuredOutputs",
      });
    }
    const cache = provider.promptCache;
    if (cache !== undefined && provider.kind === "google") {
      ctx.addIssue({
        code: "custom",
        path: ["promptCache"],
        message:
          "a google provider takes no promptCache: Gemini caches repeated prompt prefixes by itself",
      });
    } else if (typeof cache === "object" && provider.kind !== "anthropic") {
      ctx.addIssue({
        code: "custom",
        path: ["promptCache"],
        message: "cache lifetimes are Anthropic's: other kinds take true or false",
      });
    } else if (
      typeof cache === "object" &&
      cache.conversationTtl === "1h" &&
      cache.prefixTtl !== "1h"
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["promptCache", "conversationTtl"],
        message: 'conversationTtl "1h" needs prefixTtl "1h" (longer-lived breakpoints come first)',
      });
    }
  });

/** An instant: an ISO 8601 date-time with an offset (`2026-01-01T09:00:00Z`) or epoch ms. */
const instant = z.union([z.string().min(1), z.number().int().nonnegative()]);

/**
 * A Model Context Protocol server whose tools the gateway offers (`@beamclaw/mcp`): a
 * `command` it runs (stdio) or a Streamable HTTP `url`, with its options.
 */
export const McpServerConfigSchema = z
  .object({
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).optional(),
    cwd: z.string().optional(),
    url: z.url({ protocol: /^https?$/ }).optional(),
    headers: z.record(z.string(), z.string()).default({}),
    /** Only these of its tools (their names on the server). Default: all. */
    include: z.array(z.string()).optional(),
    /** A call's time limit. Default: `tools.timeoutMs`. */
    timeoutMs: positiveMs.optional(),
    connectTimeoutMs: positiveMs.optional(),
    /** Approval of its tools' calls: follow `tools.approvals` (default), ask always, or never. */
    approval: z.enum(["inherit", "always", "never"]).optional(),
  })
  .strict()
  .refine((server) => (server.command === undefined) !== (server.url === undefined), {
    message: "an MCP server needs either a command (stdio) or a url (Streamable HTTP)",
  });

/** A scheduled job (see the cron service for the semantics). */
/**
 * The shape of a cron job's schedule, before it is compiled (see `CronJobConfigSchema`, which
 * also compiles it). @internal
 */
export const CronScheduleShapeSchema = z.union([
  z.object({ at: instant }).strict(),
  z.object({ every: positiveMs, anchor: instant.optional() }).strict(),
  z
    .object({
      cron: z.string().min(1),
      timezone: z.string().optional(),
      /** A fixed per-job offset in `[0, staggerMs)` after each occurrence (see `CronSchedule`). */
      staggerMs: z.number().int().min(0).max(2_147_483_647).optional(),
    })
    .strict(),
]);

export const CronJobConfigSchema = z
  .object({
    /** Same rules as an agent id: it becomes part of isolated session keys. */
    id: z.string().regex(AGENT_ID_PATTERN, `a job id matching ${AGENT_ID_PATTERN.source}`),
    agentId: z.string().regex(AGENT_ID_PATTERN),
    schedule: CronScheduleShapeSchema
      // Checked as the cron service will compile it (expression, time zone, instants), so a
      // schedule it would refuse is a configuration error, not a half-applied reload.
      .superRefine((schedule, ctx) => {
        try {
          compileSchedule(schedule as CronSchedule, 0);
        } catch (error) {
          const message = (error as Error).message;
          const field = /^schedule\.(\w+)/.exec(message)?.[1];
          ctx.addIssue({
            code: "custom",
            message: message.replace(/^schedule\.\w+ /, ""),
            ...(field !== undefined && field in schedule ? { path: [field] } : {}),
          });
        }
      }),
    session: z.enum(["main", "isolated"]).default("isolated"),
    // Only whitespace, or a lone surrogate: every run's message would be refused (see `send`).
    prompt: z
      .string()
      .min(1)
      .refine((prompt) => prompt.length === 0 || prompt.trim() !== "", {
        message: "is only whitespace: every run would send a message of nothing",
      })
      .refine((prompt) => prompt.isWellFormed(), {
        message: "holds a lone surrogate (half of a UTF-16 pair); use well-formed Unicode",
      }),
    enabled: z.boolean().default(true),
    catchUp: z.enum(["skip", "run-once", "run-all"]).default("run-once"),
    /** With `catchUp: run-all`, at most this many missed runs are run after downtime. */
    catchUpLimit: z.number().int().min(1).max(1000).default(10),
    delivery: z
      .union([
        z.object({ kind: z.literal("none") }).strict(),
        z.object({ kind: z.literal("announce"), channel: z.string(), target: z.string() }).strict(),
        z
          .object({
            kind: z.literal("webhook"),
            // A webhook is POSTed with fetch: only http and https can be delivered to.
            url: z
              .string()
              .url()
              .refine((url) => /^https?:\/\//i.test(url), "must be an http or https URL"),
          })
          .strict(),
      ])
      .default({ kind: "none" }),
    /**
     * Time limit of each run, in ms (the run's `SendOptions.timeoutMs`): a run past it is
     * cancelled and recorded as an error with `RUN_TIMEOUT`. Default: none of its own (the
     * agent's `timeoutMs` still applies).
     */
    timeoutMs: positiveMs.max(MAX_RUN_TIMEOUT_MS).optional(),
  })
  .strict();

/** An `exec` allowlist entry (see `ExecAllowlistEntry`). */
const ExecAllowlistEntrySchema = z
  .object({
    /** An absolute program path (`/usr/bin/git`) or a bare name found on the host's search path (`git`). */
    executable: z
      .string()
      .min(1)
      .refine((e) => e.startsWith("/") || !e.includes("/"), "an absolute path or a bare name"),
    /** Argument patterns: exact strings, `*` (one argument), `**` (the rest, last only). Omitted: any. */
    argv: z
      .array(z.string())
      .refine((a) => !a.slice(0, -1).includes("**"), '"**" may only be the last pattern')
      .optional(),
  })
  .strict();

/**
 * `tools.exec`: the `exec` and `process` tools (`createExecTool`). Off by default. Every
 * command needs an approval bound to its exact form unless `allowlist` covers it; with
 * `tools.approvals.mode: off` only allowlisted commands run. The model is offered `host`, plus
 * `sandbox` when a `sandbox` section is present and `node` when a `node` section is present;
 * the gateway host (no isolation) only when it is `host`.
 */
export const ExecToolConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Where commands run by default: this machine, an isolated sandbox, or a paired node. */
    host: z.enum(["gateway", "sandbox", "node"]).default("sandbox"),
    /**
     * Directories on this machine commands may start in (and below); the first is the
     * default. Relative to the configuration file. Required for hosts `gateway` and `sandbox`.
     */
    roots: z.array(z.string().min(1)).default([]),
    /** A command still running after this long continues in the background (`process` tool). */
    yieldAfterMs: positiveMs.default(10_000),
    /** A command still running after this long is killed. */
    timeoutMs: positiveMs.default(1_800_000),
    sandbox: z
      .object({
        /** `bubblewrap` (Linux user namespaces) or `docker` (a throwaway container). */
        driver: z.enum(["bubblewrap", "docker"]).default("bubblewrap"),
        /** The image, for `docker`. */
        image: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, "a docker image name")
          .optional(),
      })
      .strict()
      .optional(),
    /** A paired node (its device id), reached through the gateway's `system.run` relay. */
    node: z
      .object({
        nodeId: z.string().regex(/^[^\s/]+$/, "a node id (its device id)"),
        /** The node's default directory (absolute, on the node); else commands must name one. */
        workdir: z.string().regex(/^\//, "an absolute path on the node").optional(),
      })
      .strict()
      .optional(),
    /** Commands that run without asking. */
    allowlist: z.array(ExecAllowlistEntrySchema).default([]),
  })
  .strict()
  .superRefine((exec, ctx) => {
    if (exec.host === "node" && exec.node === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["node"],
        message: "required when host is node: { nodeId, workdir }",
      });
    }
    if (exec.sandbox?.driver === "docker" && exec.sandbox.image === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["sandbox", "image"],
        message: "required with driver docker (e.g. debian:bookworm-slim)",
      });
    }
    const local = exec.host !== "node" || exec.sandbox !== undefined;
    if (exec.enabled && local && exec.roots.length === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["roots"],
        message:
          "at least one directory: commands on this machine (host gateway or sandbox) run only below a root",
      });
    }
  });

/** `tools.webFetch`: the `web_fetch` tool (`createWebFetchTool`). Off by default. */
export const WebFetchToolConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    /**
     * Internal hosts and networks it may reach despite the SSRF guard: IPs, CIDRs, host names,
     * `*.domain` wildcards.
     */
    allow: z.array(z.string().min(1)).default([]),
    /** The most body bytes one call downloads. */
    maxBytes: z.number().int().positive().default(2_097_152),
    timeoutMs: positiveMs.default(30_000),
  })
  .strict();

const EXEC_DEFAULTS = {
  enabled: false,
  host: "sandbox" as const,
  roots: [],
  yieldAfterMs: 10_000,
  timeoutMs: 1_800_000,
  allowlist: [],
};
const WEB_FETCH_DEFAULTS = { enabled: false, allow: [], maxBytes: 2_097_152, timeoutMs: 30_000 };

/** A browser origin: `scheme://host[:port]`, nothing after it. */
const origin = z.string().refine((value) => {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}, "an origin: scheme://host[:port], without a path or a trailing slash");

/** A trusted proxy: an IPv4 / IPv6 address, or a CIDR range with a prefix valid for its family. */
const trustedProxy = z.string().refine((value) => {
  const [address = "", prefix, extra] = value.trim().split("/");
  const family = isIP(address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, ""));
  if (family === 0 || extra !== undefined) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}, "an IP address or CIDR range (10.0.0.0/8, fd00::/8)");

/** A hook action's delivery and run settings, shared by mappings and `/hooks/agent` bodies. */
const hookRunFields = {
  /** A name for the hook (`GitHub`): prefixes the summary its run leaves in the main session. */
  name: z.string().min(1).max(200).optional(),
  /** The agent that runs it. Default: the first agent. */
  agentId: z.string().regex(AGENT_ID_PATTERN, "an agent id").optional(),
  /**
   * The session (`hook:github:{{repository.full_name}}`): without `agent:<id>:` it is taken
   * inside the agent's sessions. A value rendered from the payload counts as the caller's
   * choice (it needs `allowRequestSessionKey` and a matching prefix).
   */
  sessionKey: z.string().min(1).max(512).optional(),
  /** `now` (default): the summary it leaves in the main session runs a heartbeat at once. */
  wakeMode: z.enum(["now", "next-heartbeat"]).optional(),
  /** Send the answer somewhere (default true): to `channel`/`to`, else the main session. */
  deliver: z.boolean().optional(),
  /** The channel id the answer goes to (with `to`). */
  channel: z.string().regex(CHANNEL_ID_PATTERN, "a channel id").optional(),
  /** The chat in that channel, as OpenClaw writes it (`group:-100123`, `4711`). */
  to: z.string().min(1).max(512).optional(),
  /** The channel account. Default `default`. */
  accountId: z.string().min(1).max(128).optional(),
  /** The model of this run (`provider/model`). */
  model: modelRef.optional(),
  thinking: z.enum(["off", "minimal", "low", "medium", "high"]).optional(),
  /** The run's time limit, seconds. */
  timeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(Math.floor(MAX_RUN_TIMEOUT_MS / 1000))
    .optional(),
  /** Pass the payload to the model without the untrusted-content wrapper (dangerous). */
  allowUnsafeExternalContent: z.boolean().optional(),
};

/** One of `hooks.mappings`: which requests it takes and what they become. */
export const HookMappingConfigSchema = z
  .object({
    /** A name for logs (default the match). */
    id: z.string().min(1).max(64).optional(),
    /**
     * Which requests: `path` is what follows the hooks path (`/hooks/github` → `github`),
     * `source` the payload's `source` field. Both, when both are given.
     */
    match: z
      .object({
        path: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._~-]*(\/[A-Za-z0-9][A-Za-z0-9._~-]*)*$/, "a sub-path")
          .optional(),
        source: z.string().min(1).optional(),
      })
      .strict()
      .refine((m) => m.path !== undefined || m.source !== undefined, {
        message: "set match.path or match.source",
      }),
    /**
     * One action per item of the payload's array of this name (`messages`), each seeing the
     * payload with that item alone in the array (at most 50 items a request).
     */
    forEach: z
      .string()
      .regex(/^[A-Za-z_$][\w$-]*$/, "a top-level field name")
      .optional(),
    /** `agent` (default): a run of the agent; `wake`: a line for the main session's heartbeat. */
    action: z.enum(["agent", "wake"]).default("agent"),
    /** The agent's message, from the payload (`{{pull_request.title}}`). Default the payload as JSON. */
    messageTemplate: z.string().min(1).optional(),
    /** The wake line, from the payload. Default the payload's `text`. */
    textTemplate: z.string().min(1).optional(),
    /**
     * A module of `transformsDir` (relative, `.js`/`.mjs`) whose export (`default`, or
     * `export`) turns the request into the action: see the gateway's `HookTransform`.
     */
    transform: z
      .object({ module: z.string().min(1), export: z.string().min(1).optional() })
      .strict()
      .optional(),
    ...hookRunFields,
  })
  .strict();

/** The `hooks` section: HTTP endpoints external services call to wake or run an agent. */
export const HooksConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    /**
     * The secret callers send (`Authorization: Bearer <token>` or `x-openclaw-token`); its own,
     * never the gateway's. Required when enabled.
     */
    token: z.string().min(1).optional(),
    /** Where the endpoints are (`<path>/wake`, `<path>/agent`, `<path>/<mapping>`). */
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, "a path such as /hooks (not /)")
      .default("/hooks"),
    /** Largest body accepted (413 beyond). Default 256 KiB. */
    maxBodyBytes: z.number().int().min(1024).max(16_777_216).default(262_144),
    /** The session of agent runs that name none. Default: a new session per request. */
    defaultSessionKey: z.string().min(1).max(512).optional(),
    /** Callers (and templated mapping keys) may choose the session. Default false. */
    allowRequestSessionKey: z.boolean().default(false),
    /** The prefixes a caller's session key must start with (`hook:`), when set. */
    allowedSessionKeyPrefixes: z.array(z.string().min(1)).default([]),
    /** The agents a request may name (`*`: any). Default: any. `[]`: none may be named. */
    allowedAgentIds: z.array(z.string().min(1)).optional(),
    /** How long the sessions of requests without a key are kept. Default 24 h. */
    sessionRetentionMs: positiveMs.default(86_400_000),
    /** Built-in mappings: `gmail` (Gmail Pub/Sub through `gog gmail watch`). */
    presets: z.array(z.enum(["gmail"])).default([]),
    /** The directory `transform.module` paths are relative to. */
    transformsDir: z.string().min(1).optional(),
    mappings: z.array(HookMappingConfigSchema).default([]),
  })
  .strict()
  .refine((h) => !h.enabled || h.token !== undefined, {
    message: "hooks.token is required when hooks are enabled",
    path: ["token"],
  });

/**
 * The whole configuration: the shape of `beamclaw.yaml`, and of the object a host app
 * passes when it embeds BeamClaw without a file.
 */
export const ConfigSchema = z
  .object({
    gateway: z
      .object({
        /** Address to listen on. */
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(0).max(65_535).default(18_789),
        auth: z
          .object({
            mode: z.enum(["none", "token", "password"]).default("token"),
            token: z.string().optional(),
            password: z.string().optional(),
            /** Pairing requests from loopback are approved automatically. */
            autoApproveLoopback: z.boolean().default(true),
            /**
             * Failed logins per remote address: `maxAttempts` (10) wrong credentials within
             * `windowMs` (60 s) refuse the address for `lockoutMs` (5 min); loopback only
             * when `exemptLoopback`. `false` turns it off.
             */
            rateLimit: z
              .union([
                z.literal(false),
                z
                  .object({
                    maxAttempts: z.number().int().positive().optional(),
                    windowMs: positiveMs.optional(),
                    lockoutMs: positiveMs.optional(),
                    exemptLoopback: z.boolean().optional(),
                    maxTrackedAddresses: z.number().int().positive().optional(),
                  })
                  .strict(),
              ])
              .optional(),
            /**
             * Caps on pending pairing requests: `maxPending` (100) in all and
             * `maxPendingPerAddress` (10) from one client address; past one, a device asking
             * to pair is refused (`PAIRING_REQUESTS_FULL`, retryable).
             */
            pairingRequests: z
              .object({
                maxPending: z.number().int().positive().optional(),
                maxPendingPerAddress: z.number().int().positive().optional(),
              })
              .strict()
              .optional(),
          })
          .strict()
          .default({ mode: "token", autoApproveLoopback: true }),
        tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
        /** Limits announced to clients. */
        maxPayloadBytes: z.number().int().positive().default(1_048_576),
        tickIntervalMs: positiveMs.default(30_000),
        /**
         * How long, in ms, a run's streamed text may be held back so that its deltas reach
         * clients as one `chat` and one `agent` event (the gateway's `streamCoalesceMs`).
         * Unset or 0: every delta is sent as it comes.
         */
        streamCoalesceMs: z.number().int().min(0).max(10_000).optional(),
        /**
         * Liveness of connected clients and nodes: each is pinged every `intervalMs` (30 s);
         * after `missedBeatsOffline` (3) missed beats in a row it is offline and disconnected.
         * `false` turns it off.
         */
        presence: z
          .union([
            z.literal(false),
            z
              .object({
                intervalMs: positiveMs.optional(),
                missedBeatsOffline: z.number().int().min(1).optional(),
              })
              .strict(),
          ])
          .optional(),
        /**
         * HTTP endpoints on the gateway's port besides health probes: `/v1/chat/completions`
         * and `/v1/models` (on by default), `/v1/responses` (OpenResponses; off by default).
         */
        http: z
          .object({
            chatCompletions: z.boolean().default(true),
            models: z.boolean().default(true),
            responses: z.boolean().default(false),
            /**
             * How long `/v1/responses` keeps a stateless response so that a later request can
             * continue it by `previous_response_id`: 30 days by default, as OpenAI keeps them;
             * at most 365 days; 0 keeps none.
             */
            responsesKeepMs: z
              .number()
              .int()
              .min(0)
              .max(365 * DAY_MS)
              .default(30 * DAY_MS),
          })
          .strict()
          .default({
            chatCompletions: true,
            models: true,
            responses: false,
            responsesKeepMs: 30 * DAY_MS,
          }),
        /**
         * Browser origins (`https://ops.example.com`) besides the gateway's own that may open
         * WebSockets and call the HTTP API; other browser origins get 403.
         */
        allowedOrigins: z.array(origin).default([]),
        /**
         * Reverse proxies in front of the gateway (IPv4 / IPv6 addresses and CIDR ranges, e.g.
         * `10.0.0.0/8`): a request from one counts as coming from the client its
         * `X-Forwarded-For` (rightmost hop that is not a trusted proxy) or `X-Real-IP` names,
         * for the failed-login limit, pairing requests and presence. Default none: forwarded
         * headers are never read.
         */
        trustedProxies: z.array(trustedProxy).default([]),
      })
      .strict()
      .default({
        host: "127.0.0.1",
        http: {
          chatCompletions: true,
          models: true,
          responses: false,
          responsesKeepMs: 30 * DAY_MS,
        },
        allowedOrigins: [],
        trustedProxies: [],
        port: 18_789,
        auth: { mode: "token", autoApproveLoopback: true },
        maxPayloadBytes: 1_048_576,
        tickIntervalMs: 30_000,
      }),
    store: z
      .union([
        z
          .object({
            kind: z.literal("fs"),
            dir: z.string().min(1),
            /** How long acknowledged idempotency keys are remembered (default 24 h). */
            dedupeWindowMs: z.number().int().min(0).optional(),
          })
          .strict(),
        z.object({ kind: z.literal("memory") }).strict(),
        z
          .object({
            kind: z.literal("redis"),
            url: z.string().min(1),
            prefix: z.string().optional(),
          })
          .strict(),
      ])
      .default({ kind: "fs", dir: "./.beamclaw" }),
    providers: z
      .record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/), ProviderConfigSchema)
      .default({}),
    /** Prices per million tokens by `provider/model`, for cost accounting. */
    pricing: z
      .record(
        z.string(),
        z
          .object({
            inputPerMTok: z.number().min(0),
            outputPerMTok: z.number().min(0),
            cacheReadPerMTok: z.number().min(0).optional(),
            cacheWritePerMTok: z.number().min(0).optional(),
            cacheWrite1hPerMTok: z.number().min(0).optional(),
          })
          .strict(),
      )
      .default({}),
    agents: AgentsSchema,
    sessions: z
      .object({
        hibernateAfterMs: positiveMs.default(300_000),
        historyLimit: z.number().int().min(1).default(200),
        maxQueuedMessages: z.number().int().min(1).default(100),
        defaultQueueMode: z.enum(["steer", "followup", "collect", "interrupt"]).default("followup"),
        /**
         * Deleting old sessions (`SessionMaintenance`): those not updated for `pruneAfterMs`
         * (30 days), and beyond `maxSessions` per agent the least recently updated; `warn`
         * (default) only reports them, `enforce` deletes them, every `everyMs` (1 h). Main
         * sessions and sessions in memory are kept. Off when absent. Applied live.
         */
        maintenance: z
          .object({
            mode: z.enum(["warn", "enforce"]).default("warn"),
            pruneAfterMs: positiveMs.default(2_592_000_000),
            maxSessions: z.number().int().positive().optional(),
            archiveTranscripts: z.boolean().default(false),
            everyMs: z.number().int().min(1000).default(3_600_000),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({
        hibernateAfterMs: 300_000,
        historyLimit: 200,
        maxQueuedMessages: 100,
        defaultQueueMode: "followup",
      }),
    tools: z
      .object({
        timeoutMs: timerMs.default(120_000),
        /**
         * Cap on one tool result in the transcript, in bytes of UTF-8; a longer result is
         * cut with a marker saying how many bytes were dropped. Default 64 KiB.
         */
        maxOutputBytes: z.number().int().min(1024).default(65_536),
        approvals: z
          .object({
            mode: z.enum(["off", "on-miss", "always"]).default("on-miss"),
            timeoutMs: timerMs.default(120_000),
            defaultDecision: z.enum(["allow-once", "allow-always", "deny"]).default("deny"),
          })
          .strict()
          .default({ mode: "on-miss", timeoutMs: 120_000, defaultDecision: "deny" }),
        exec: ExecToolConfigSchema.default(EXEC_DEFAULTS),
        webFetch: WebFetchToolConfigSchema.default(WEB_FETCH_DEFAULTS),
        /**
         * MCP servers whose tools agents may call, by name (`^[a-zA-Z0-9_-]{1,32}$`): each
         * tool is `<name>__<tool>` in agents' allowlists. Started with the gateway; a change
         * takes a restart.
         */
        mcpServers: z
          .record(
            z.string().regex(/^[a-zA-Z0-9_-]{1,32}$/, "a name matching ^[a-zA-Z0-9_-]{1,32}$"),
            McpServerConfigSchema,
          )
          .default({}),
      })
      .strict()
      .default({
        timeoutMs: 120_000,
        maxOutputBytes: 65_536,
        approvals: { mode: "on-miss", timeoutMs: 120_000, defaultDecision: "deny" },
        exec: EXEC_DEFAULTS,
        webFetch: WEB_FETCH_DEFAULTS,
        mcpServers: {},
      }),
    skills: z
      .object({
        dirs: z.array(z.string()).default([]),
        /**
         * Reload the skills when a `SKILL.md` in `dirs` is added, edited or removed (not only
         * when this file changes). Default true.
         */
        watch: z.boolean().default(true),
        /** At most this many eligible skills are loaded (in name order). Default 150. */
        maxSkills: z.number().int().positive("expected a whole number from 1 up").optional(),
        /** At most this many bytes of skill text in a prompt. Default 512 KiB. */
        maxPromptBytes: z.number().int().positive("expected a whole number from 1 up").optional(),
      })
      .strict()
      .default({ dirs: [], watch: true }),
    cron: z
      .object({ jobs: z.array(CronJobConfigSchema).default([]) })
      .strict()
      .default({ jobs: [] }),
    heartbeat: z
      .object({
        enabled: z.boolean().default(false),
        /** Milliseconds between beats, at least 60000 (one minute). Default 30 min. */
        everyMs: positiveMs
          .min(60_000, {
            error: (issue) =>
              `expected at least 60000 ms (one minute) between heartbeats, got ${String(issue.input)}`,
          })
          .default(1_800_000),
        /**
         * Time limit of one heartbeat turn, ms (a whole number from 1 up). A turn still
         * running then is aborted and reported as a failed beat, so that a turn that never
         * ends does not keep every later beat busy. Default: no limit.
         */
        turnTimeoutMs: z
          .number()
          .int()
          .positive("expected a number of milliseconds from 1 up")
          .optional(),
        activeHours: z
          .object({
            start: z.string().regex(/^\d\d:\d\d$/),
            end: z.string().regex(/^\d\d:\d\d$/),
            timezone: z.string().optional(),
          })
          .strict()
          // Checked as the heartbeat will compile it (hours, an empty window, the time zone).
          .superRefine((hours, ctx) => {
            try {
              compileActiveHours(hours);
            } catch (error) {
              ctx.addIssue({ code: "custom", message: (error as Error).message });
            }
          })
          .optional(),
        /** The heartbeat prompt (default: OpenClaw's). */
        prompt: z.string().min(1).optional(),
        /**
         * A `HEARTBEAT.md` checklist whose text is appended to the prompt, read at every beat
         * (a relative path is relative to the config file; a missing file leaves the prompt
         * alone, one of only headings and blank lines skips the beat).
         */
        heartbeatFile: z.string().min(1).optional(),
        /**
         * @deprecated Use `gateway.presence.intervalMs`, which wins when both are set. The
         * liveness ping interval, used when `gateway.presence` does not set one.
         */
        presenceIntervalMs: positiveMs.optional(),
        /**
         * @deprecated Use `gateway.presence.missedBeatsOffline`, which wins when both are
         * set. Missed beats before a connection is offline, used when `gateway.presence` does
         * not set it.
         */
        missedBeatsOffline: z.number().int().min(1).optional(),
      })
      .strict()
      .default({ enabled: false, everyMs: 1_800_000 }),
    /**
     * Load shedding under memory pressure (see `MemoryPressureMonitor`): above a threshold
     * new runs are refused with a retryable error, idle sessions hibernate and caches are
     * trimmed, until memory is back below `recoverRatio` of it. Off when absent.
     */
    memoryPressure: z
      .object({
        /** Pressure when the V8 heap in use exceeds this many bytes. */
        maxHeapUsedBytes: z.number().int().positive().optional(),
        /** Pressure when the V8 heap in use exceeds this fraction of the heap limit. */
        maxHeapUsedRatio: z.number().gt(0).max(1).optional(),
        /** Pressure when the resident set size exceeds this many bytes. */
        maxRssBytes: z.number().int().positive().optional(),
        /** Pressure ends once every measure is at or below this fraction of its threshold. */
        recoverRatio: z.number().gt(0).lt(1).default(0.85),
        sampleIntervalMs: timerMs.default(1_000),
      })
      .strict()
      .refine(
        (m) =>
          m.maxHeapUsedBytes !== undefined ||
          m.maxHeapUsedRatio !== undefined ||
          m.maxRssBytes !== undefined,
        { message: "set maxHeapUsedBytes, maxHeapUsedRatio or maxRssBytes" },
      )
      .optional(),
    /**
     * Channels by channel id (`^[a-z][a-z0-9_-]{0,31}$`, it appears in session keys). The
     * host reads `kind` (the adapter; default the id), `enabled` (default true) and the
     * routing settings (`dmPolicy`, `dmScope`, `agentId`, ...); each adapter validates the
     * rest of its section. Applied live: a changed section restarts that channel only.
     */
    channels: z
      .record(
        z.string().regex(CHANNEL_ID_PATTERN, "a channel id is lower-case: ^[a-z][a-z0-9_-]{0,31}$"),
        z
          .object({ kind: z.string().min(1).optional(), enabled: z.boolean().optional() })
          .catchall(z.unknown()),
      )
      .default({}),
    /**
     * Speech to text for the voice notes channels download (`attachments.inlineAudioMaxBytes`
     * of a channel section): `provider` names a `providers` entry of kind `openai`,
     * `openai-responses` or `openai-compatible` (its key, `baseUrl` and headers are used for
     * the Audio API, `POST /audio/transcriptions`). Off when absent.
     */
    transcription: z
      .object({
        /** The `providers` entry whose Audio API transcribes. */
        provider: z.string().min(1),
        /** Default `gpt-4o-mini-transcribe` (Groq: `whisper-large-v3-turbo`). */
        model: z.string().min(1).optional(),
        /** The spoken language (ISO-639-1), when all voice notes are in one. */
        language: z.string().min(2).optional(),
        /** Names and jargon to spell right. */
        prompt: z.string().optional(),
        /** Time limit of one transcription, ms. Default 60 000. */
        timeoutMs: positiveMs.optional(),
      })
      .strict()
      .optional(),
    /**
     * Inbound webhooks (OpenClaw's `hooks`): `POST <path>/wake`, `<path>/agent` and mapped
     * `<path>/<name>` on the gateway's port, with their own token. Off unless `enabled`.
     * Applied live (a changed token or mapping counts from the next request).
     */
    hooks: HooksConfigSchema.default({
      enabled: false,
      path: "/hooks",
      maxBodyBytes: 262_144,
      allowRequestSessionKey: false,
      allowedSessionKeyPrefixes: [],
      sessionRetentionMs: 86_400_000,
      presets: [],
      mappings: [],
    }),
    /** Feature flags. */
    features: z.record(z.string(), z.boolean()).default({}),
  })
  .strict();

/** The configuration as written (defaults optional). */
export type ConfigInput = z.input<typeof ConfigSchema>;
/** The configuration after validation, with defaults filled in. */
export type BeamClawConfig = z.output<typeof ConfigSchema>;
/** One agent's configuration. */
export type AgentConfig = z.output<typeof AgentConfigSchema>;
/** One cron job's configuration. */
export type CronJobConfig = z.output<typeof CronJobConfigSchema>;
/** `tools.exec` after validation. */
export type ExecToolConfig = z.output<typeof ExecToolConfigSchema>;
/** `tools.webFetch` after validation. */
export type WebFetchToolConfig = z.output<typeof WebFetchToolConfigSchema>;
/** The `hooks` section, validated. */
export type HooksConfig = z.output<typeof HooksConfigSchema>;
/** One of `hooks.mappings`, validated. */
export type HookMappingConfig = z.output<typeof HookMappingConfigSchema>;
/** One of `tools.mcpServers`, validated. */
export type McpServerConfig = z.output<typeof McpServerConfigSchema>;

/**
 * Dotted paths whose change needs a restart: secrets, endpoints, listening sockets, auth,
 * and where `exec` runs commands (`tools.exec` `enabled`, `host`, `roots`, `sandbox`,
 * `node`): the hosts are built, probed and own their running processes for the process's
 * lifetime, and an approval names its host, so they never change under a running command.
 * The runtime's session limits (`sessions.hibernateAfterMs`, `historyLimit`,
 * `maxQueuedMessages`, `defaultQueueMode`), `pricing` and `heartbeat` are read when the
 * runtime and gateway are built, so they need a restart too. Everything else (timeouts,
 * feature flags, cron jobs, channel settings, agents, skills, `sessions.maintenance`, tools —
 * the exec allowlist and limits, `web_fetch` — allowed origins) is applied live.
 */
export const RESTART_ONLY_PATHS: readonly string[] = [
  "gateway.host",
  "gateway.port",
  "gateway.tls",
  "gateway.auth",
  // Read when the gateway is built: its limits, liveness, HTTP endpoints and stream window.
  "gateway.maxPayloadBytes",
  "gateway.tickIntervalMs",
  "gateway.presence",
  "gateway.http",
  "gateway.streamCoalesceMs",
  "gateway.trustedProxies",
  "store",
  "providers",
  "tools.mcpServers",
  "tools.exec.enabled",
  "tools.exec.host",
  "tools.exec.roots",
  "tools.exec.sandbox",
  "tools.exec.node",
  "memoryPressure",
  // The ChannelManager's transcriber is built with the manager.
  "transcription",
  // The runtime reads these when it is built (its session limits and cost function).
  "sessions.hibernateAfterMs",
  "sessions.historyLimit",
  "sessions.maxQueuedMessages",
  "sessions.defaultQueueMode",
  "pricing",
  // The gateway's heartbeat service is built with these (`set-heartbeats` toggles it live).
  "heartbeat",
  // Whether the skill directories are watched is decided when the gateway starts.
  "skills.watch",
];

/** The JSON Schema of `beamclaw.yaml`, for editors (`# yaml-language-server: $schema=...`). */
export function configJsonSchema(): Record<string, unknown> {
  const documented = ConfigSchema.extend({ agents: AgentsInputSchema });
  return z.toJSONSchema(documented, { target: "draft-2020-12", io: "input" }) as Record<
    string,
    unknown
  >;
}
