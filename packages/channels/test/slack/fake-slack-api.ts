/**
 * A fake Slack Web API for tests, served by msw at `https://slack.test/<workspace>/api/`:
 * `auth.test`, `users.info`, `chat.postMessage`, `chat.update`, `apps.connections.open` and
 * `files.info`, answering with the shapes of Slack's method documentation (https://docs.slack.dev/reference/methods),
 * errors included (`{ ok: false, error }` with HTTP 200; a rate limit is HTTP 429 with
 * `Retry-After` and `{ ok: false, error: "ratelimited" }`). Files shared in the workspace are
 * served at `https://files.slack.com/files-pri/<team>-<file id>/download/<name>`
 * (`url_private_download`), to the bot token only: without it, or without the `files:read`
 * scope, Slack answers its sign-in page (HTML) instead of the file
 * (https://docs.slack.dev/messaging/working-with-files#authenticating).
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

/** A file shared in the fake workspace (see {@link FakeSlackWorkspace.addFile}). */
export interface FakeSlackFileSpec {
  name: string;
  mimetype: string;
  /** The file's content. */
  bytes: Buffer;
  /** The `size` the file object declares. Default `bytes.length`. */
  size?: number;
  /** Serve this instead of `bytes` (a file whose declared size is not what is served). */
  served?: Buffer;
  /** Answer downloads with this status (and no file). */
  status?: number;
  /** Send a `Content-Length` header. Default true. */
  contentLength?: boolean;
  /** Answer only after this many ms (or once the request is aborted). */
  delayMs?: number;
  /** Answer only once this settles (or once the request is aborted): a download held open. */
  hold?: Promise<void>;
  /** Called when a download request arrives, before it is answered. */
  onRequest?: () => void;
}

/** One download of a file, as the fake saw it. */
export interface FakeFileRequest {
  fileId: string;
  /** The `Authorization` header. */
  authorization: string | null;
  /** The HTTP status answered. */
  status: number;
}

/** Slack's answer to a file request it does not authorise: its sign-in page. */
export const SLACK_SIGN_IN_PAGE =
  '<!DOCTYPE html><html lang="en-US"><head><title>Slack</title></head><body><form action="/signin">Sign in to your workspace</form></body></html>';

/** A canned answer for the next call of a method. */
export interface FakeAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: Record<string, unknown>;
  /** Fail the request as a network error would. */
  networkError?: boolean;
  /** Answer only after this many ms. */
  delayMs?: number;
  /** Answer only once this settles (or once the request is aborted): a call held open. */
  hold?: Promise<void>;
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
  /**
   * Shares a file in the workspace: its Slack file object (as in `files[]` of a `file_share`
   * event and `files.info`), whose `url_private_download` this fake serves.
   */
  addFile(spec: FakeSlackFileSpec): Record<string, unknown>;
  /** Every file download, in order. */
  readonly fileRequests: FakeFileRequest[];
  /** Whether the bot token has the `files:read` scope. Default true. */
  filesRead: boolean;
  close(): void;
}

const workspaces = new Map<
  string,
  FakeSlackWorkspace & { handle(method: string, request: Request): Promise<Response> }
>();
/** File id → the workspace that has it and how to serve it. */
const sharedFiles = new Map<
  string,
  { workspace: FakeSlackWorkspace; spec: FakeSlackFileSpec; object: Record<string, unknown> }
>();
let fileCounter = 0;
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
      http.get(
        "https://files.slack.com/files-pri/:teamFile/download/:name",
        async ({ request, params }) => {
          const spec = sharedFiles.get(fileIdOf(String(params.teamFile)))?.spec;
          spec?.onRequest?.();
          if (spec?.delayMs !== undefined) await delay(spec.delayMs, request.signal);
          if (spec?.hold !== undefined) await held(spec.hold, request.signal);
          return serveFile(String(params.teamFile), request);
        },
      ),
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
      case "files.info": {
        if (!workspace.filesRead) {
          return {
            body: {
              ok: false,
              error: "missing_scope",
              needed: "files:read",
              provided: "chat:write",
            },
          };
        }
        const shared = sharedFiles.get(args.file ?? "");
        if (shared === undefined || shared.workspace !== workspace) {
          return { body: { ok: false, error: "file_not_found" } };
        }
        return { body: { ok: true, file: shared.object, comments: [], response_metadata: {} } };
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
    fileRequests: [] as FakeFileRequest[],
    filesRead: true,
    addFile(spec: FakeSlackFileSpec): Record<string, unknown> {
      const id = `F0FILE${String(++fileCounter).padStart(4, "0")}`;
      const base = `https://files.slack.com/files-pri/${FAKE_BOT.teamId}-${id}`;
      const object: Record<string, unknown> = {
        id,
        created: Math.floor(Date.now() / 1000),
        timestamp: Math.floor(Date.now() / 1000),
        name: spec.name,
        title: spec.name,
        mimetype: spec.mimetype,
        filetype: spec.name.split(".").pop() ?? "",
        user: "U123ABC456",
        user_team: FAKE_BOT.teamId,
        mode: "hosted",
        is_external: false,
        is_public: false,
        size: spec.size ?? spec.bytes.length,
        url_private: `${base}/${encodeURIComponent(spec.name)}`,
        url_private_download: `${base}/download/${encodeURIComponent(spec.name)}`,
        permalink: `https://beamclaw-test.slack.com/files/U123ABC456/${id}/${spec.name}`,
      };
      sharedFiles.set(id, { workspace, spec, object });
      return object;
    },
    close() {
      workspaces.delete(name);
      for (const [id, shared] of sharedFiles) {
        if (shared.workspace === workspace) sharedFiles.delete(id);
      }
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
      if (reply.hold !== undefined) await held(reply.hold, request.signal);
      if (reply.networkError) return HttpResponse.error();
      return slackJson(reply.body ?? {}, status, reply.headers);
    },
  };
  workspaces.set(name, workspace);
  return workspace;
}

/** `F...` of the `<team>-<file id>` segment of a file URL. */
function fileIdOf(teamFile: string): string {
  return teamFile.slice(teamFile.indexOf("-") + 1);
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Settles once `hold` does, or once `signal` aborts. */
function held(hold: Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done);
    hold.then(done, done);
  });
}

/** A download of `url_private_download`: the file for its workspace's bot token, else the sign-in page. */
function serveFile(teamFile: string, request: Request): Response {
  const id = fileIdOf(teamFile);
  const shared = sharedFiles.get(id);
  const authorization = request.headers.get("authorization");
  const answer = (status: number, response: Response): Response => {
    shared?.workspace.fileRequests.push({ fileId: id, authorization, status });
    return response;
  };
  if (shared === undefined) return answer(404, new HttpResponse("file not found", { status: 404 }));
  const { workspace, spec } = shared;
  if (authorization !== `Bearer ${workspace.botToken}` || !workspace.filesRead) {
    return answer(
      200,
      new HttpResponse(SLACK_SIGN_IN_PAGE, {
        status: 200,
        headers: { "content-type": "text/html; charset=utf-8" },
      }),
    );
  }
  if (spec.status !== undefined) {
    return answer(
      spec.status,
      new HttpResponse("<html><body>not available</body></html>", {
        status: spec.status,
        headers: { "content-type": "text/html" },
      }),
    );
  }
  const body = spec.served ?? spec.bytes;
  return answer(
    200,
    new HttpResponse(new Uint8Array(body), {
      status: 200,
      headers: {
        "content-type": spec.mimetype,
        ...(spec.contentLength === false ? {} : { "content-length": String(body.length) }),
      },
    }),
  );
}

/** Stops msw; call it in `afterAll` of a test file that created workspaces. */
export function closeFakeSlackApi(): void {
  server?.close();
  server = undefined;
  workspaces.clear();
  sharedFiles.clear();
}
