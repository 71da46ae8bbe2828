/**
 * A fake Slack Web API for tests, served by msw at `https://slack.test/<workspace>/api/`:
 * `auth.test`, `users.info`, `chat.postMessage`, `chat.update` and `apps.connections.open`,
 * answering with the shapes of Slack's method documentation (https://docs.slack.dev/reference/methods),
 * errors included (`{ ok: false, error }` with HTTP 200; a rate limit is HTTP 429 with
 * `Retry-After` and `{ ok: false, error: "ratelimited" }`).
 */
import { HttpResponse, http } from "msw";
import { type SetupServer, setupServer } from "msw/node";

/** The bot the fake workspace has installed. */
export const FAKE_BOT = { userId: "U0BEAMBOT1", botId: "B0BEAMBOT1", teamId: "T0BEAMTEAM" };
export const FAKE_APP_ID = "A0BEAMAPP1";

/** One Web API request, as the fake saw it. */
export interface FakeApiCall {
  method: string;
  /** The form fields (Slack's Web API takes `application/x-www-form-urlencoded`). */
  args: Record<string, string>;
  /** The bearer token. */
  token: string | undefined;
  /** The HTTP status answered. */
  status: number;
  /** `ok` of the answer. */
  ok: boolean;
  /** When it came, epoch ms. */
  at: number;
}

/** A message the bot posted (and its later edits), as Slack stored it. */
export interface FakePostedMessage {
  channel: string;
  ts: string;
  threadTs?: string;
  /** The text as sent (escaped Slack text). */
  text: string;
  edits: string[];
}

/** A canned answer for the next call of a method. */
export interface FakeAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: Record<string, unknown>;
  /** Fail the request as a network error would. */
  networkError?: boolean;
  /** Answer only after this many ms. */
  delayMs?: number;
}

export interface FakeSlackWorkspace {
  /** The `slackApiUrl` to give the channel. */
  readonly apiUrl: string;
  readonly botToken: string;
  readonly appToken: string;
  /** Users `users.info` knows: id → display name. */
  readonly users: Map<string, string>;
  /** Every Web API call, in order. */
  readonly calls: FakeApiCall[];
  /** Every posted message, in order. */
  readonly posted: FakePostedMessage[];
  /** Where `apps.connections.open` sends Socket Mode clients. */
  socketUrl: (() => string) | undefined;
  /** Answers the next calls of `method` with these, in order (then normally again). */
  answerNext(method: string, ...answers: FakeAnswer[]): void;
  /** Calls of one method. */
  callsOf(method: string): FakeApiCall[];
  /** A fresh message ts, the way Slack makes them (`<unix seconds>.<6 digits>`). */
  nextTs(): string;
  close(): void;
}

const workspaces = new Map<
  string,
  FakeSlackWorkspace & { handle(method: string, request: Request): Promise<Response> }
>();
let server: SetupServer | undefined;
let counter = 0;

function slackJson(
  body: Record<string, unknown>,
  status = 200,
  headers: Record<string, string> = {},
) {
  return HttpResponse.json(body, { status, headers });
}

/** Starts msw (once per test file) and adds a workspace to it. */
export function createFakeSlackWorkspace(): FakeSlackWorkspace {
  if (server === undefined) {
    const started = setupServer(
      http.post("https://slack.test/:workspace/api/:method", async ({ request, params }) => {
        const workspace = workspaces.get(String(params.workspace));
        if (workspace === undefined) return slackJson({ ok: false, error: "invalid_auth" });
        return workspace.handle(String(params.method), request);
      }),
    );
    started.listen({ onUnhandledRequest: "bypass" });
    server = started;
  }
  const name = `w${++counter}`;
  const botToken = `xoxb-${name}-bot-token`;
  const appToken = `xapp-1-${name}-app-token`;
  const users = new Map<string, string>();
  const calls: FakeApiCall[] = [];
  const posted: FakePostedMessage[] = [];
  const answers = new Map<string, FakeAnswer[]>();
  let tsCounter = 0;
  const nextTs = () => `${Math.floor(Date.now() / 1000)}.${String(++tsCounter).padStart(6, "0")}`;

  const answer = (
    method: string,
    args: Record<string, string>,
    token: string | undefined,
  ): FakeAnswer => {
    const queued = answers.get(method)?.shift();
    if (queued !== undefined) return queued;
    if (method === "apps.connections.open") {
      if (token === botToken) return { body: { ok: false, error: "not_allowed_token_type" } };
      if (token !== appToken) return { body: { ok: false, error: "invalid_auth" } };
      if (workspace.socketUrl === undefined)
        return { body: { ok: false, error: "internal_error" } };
      return { body: { ok: true, url: workspace.socketUrl() } };
    }
    if (token !== botToken) return { body: { ok: false, error: "invalid_auth" } };
    switch (method) {
      case "auth.test":
        return {
          body: {
            ok: true,
            url: "https://beamclaw-test.slack.com/",
            team: "BeamClaw Test",
            user: "beamclaw",
            team_id: FAKE_BOT.teamId,
            user_id: FAKE_BOT.userId,
            bot_id: FAKE_BOT.botId,
            is_enterprise_install: false,
          },
        };
      case "users.info": {
        const name = users.get(args.user ?? "");
        if (name === undefined) return { body: { ok: false, error: "user_not_found" } };
        return {
          body: {
            ok: true,
            user: {
              id: args.user,
              team_id: FAKE_BOT.teamId,
              name: name.toLowerCase(),
              deleted: false,
              real_name: name,
              is_bot: false,
              profile: { real_name: name, display_name: name },
            },
          },
        };
      }
      case "chat.postMessage": {
        if (!args.channel) return { body: { ok: false, error: "channel_not_found" } };
        if (!args.text) return { body: { ok: false, error: "no_text" } };
        const ts = nextTs();
        posted.push({
          channel: args.channel,
          ts,
          text: args.text,
          edits: [],
          ...(args.thread_ts === undefined ? {} : { threadTs: args.thread_ts }),
        });
        return {
          body: {
            ok: true,
            channel: args.channel,
            ts,
            message: {
              text: args.text,
              user: FAKE_BOT.userId,
              bot_id: FAKE_BOT.botId,
              type: "message",
              ts,
              ...(args.thread_ts === undefined ? {} : { thread_ts: args.thread_ts }),
            },
          },
        };
      }
      case "chat.update": {
        const message = posted.find((m) => m.channel === args.channel && m.ts === args.ts);
        if (message === undefined) return { body: { ok: false, error: "message_not_found" } };
        message.edits.push(args.text ?? "");
        return {
          body: {
            ok: true,
            channel: args.channel,
            ts: args.ts,
            text: args.text,
            message: { text: args.text, user: FAKE_BOT.userId },
          },
        };
      }
      default:
        return { body: { ok: false, error: "unknown_method" } };
    }
  };

  const workspace = {
    apiUrl: `https://slack.test/${name}/api/`,
    botToken,
    appToken,
    users,
    calls,
    posted,
    socketUrl: undefined as (() => string) | undefined,
    answerNext(method: string, ...next: FakeAnswer[]) {
      const queue = answers.get(method) ?? [];
      queue.push(...next);
      answers.set(method, queue);
    },
    callsOf: (method: string) => calls.filter((c) => c.method === method),
    nextTs,
    close() {
      workspaces.delete(name);
    },
    async handle(method: string, request: Request): Promise<Response> {
      const body = await request.text();
      const args = Object.fromEntries(new URLSearchParams(body));
      const token = request.headers.get("authorization")?.replace(/^Bearer /, "");
      const reply = answer(method, args, token);
      const status = reply.networkError ? 0 : (reply.status ?? 200);
      calls.push({ method, args, token, status, ok: reply.body?.ok === true, at: Date.now() });
      if (reply.delayMs !== undefined) {
        const delayMs = reply.delayMs;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          request.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      if (reply.networkError) return HttpResponse.error();
      return slackJson(reply.body ?? {}, status, reply.headers);
    },
  };
  workspaces.set(name, workspace);
  return workspace;
}

/** Stops msw; call it in `afterAll` of a test file that created workspaces. */
export function closeFakeSlackApi(): void {
  server?.close();
  server = undefined;
  workspaces.clear();
}
