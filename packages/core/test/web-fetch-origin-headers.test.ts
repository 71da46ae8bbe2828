/**
 * Operator-configured request headers travel only to the origins they are for: `originHeaders`
 * are sent to their own origin only, a redirect to another origin drops every header that can
 * carry a credential (custom API-key headers included, not just `authorization`), and the
 * tool refuses credential-like headers it would send to whatever URL the model picks. Two
 * real HTTP servers on 127.0.0.1 (two ports: two origins).
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  createWebFetchTool,
  InvalidArgumentError,
  type JsonObject,
  type SafeFetchOptions,
  safeFetch,
  type ToolContext,
} from "../src/index.js";

interface Origin {
  origin: string;
  /** Request headers received, in order. */
  seen: IncomingHttpHeaders[];
}

const servers: Server[] = [];

/** A server that answers `redirect(path)` with a 302 to it, or else 200 "ok from <port>". */
async function origin(redirect: (path: string) => string | undefined = () => undefined) {
  const state: Origin = { origin: "", seen: [] };
  const server = createServer((req, res) => {
    state.seen.push(req.headers);
    const to = redirect(req.url ?? "/");
    if (to !== undefined) {
      res.writeHead(302, { location: to });
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`ok from ${state.origin}`);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

const ALLOW: SafeFetchOptions = { allow: ["127.0.0.1"] };
const SECRETS = {
  authorization: "Bearer secret",
  cookie: "session=secret",
  "proxy-authorization": "Basic secret",
  "x-api-key": "secret-key",
  "x-custom-thing": "operator-value",
};

function toolContext(): ToolContext {
  return {
    signal: new AbortController().signal,
    sessionKey: "agent:test:main",
    agentId: "test",
    runId: "run-1",
    toolCallId: "call-1",
    emit() {},
  };
}

describe("safeFetch: headers across a redirect", () => {
  it("drops every credential-bearing and custom header on a redirect to another origin", async () => {
    const evil = await origin();
    const api = await origin(() => `${evil.origin}/steal`);
    const page = await safeFetch(`${api.origin}/start`, {
      ...ALLOW,
      headers: { ...SECRETS, "accept-language": "de" },
    });
    expect(page.text()).toBe(`ok from ${evil.origin}`);
    expect(api.seen[0]).toMatchObject(SECRETS);
    const leaked = evil.seen[0]!;
    for (const name of Object.keys(SECRETS)) expect(leaked[name]).toBeUndefined();
    // Harmless headers still go along.
    expect(leaked["accept-language"]).toBe("de");
    expect(leaked["user-agent"]).toMatch(/BeamClaw/);
  });

  it("keeps them on a redirect within the same origin", async () => {
    const api = await origin((p) => (p === "/old" ? "/new" : undefined));
    await safeFetch(`${api.origin}/old`, { ...ALLOW, headers: SECRETS });
    expect(api.seen).toHaveLength(2);
    expect(api.seen[1]).toMatchObject(SECRETS);
  });

  it("sends originHeaders to their own origin only: never to another, first or redirected to", async () => {
    const other = await origin((p) => (p === "/to-api" ? `${api.origin}/back` : undefined));
    const api = await origin((p) => (p === "/away" ? `${other.origin}/landing` : undefined));
    const originHeaders = { [api.origin]: { "x-api-key": "api-only" } };

    await safeFetch(`${other.origin}/direct`, { ...ALLOW, originHeaders });
    expect(other.seen[0]!["x-api-key"]).toBeUndefined();

    await safeFetch(`${api.origin}/away`, { ...ALLOW, originHeaders });
    expect(api.seen[0]!["x-api-key"]).toBe("api-only");
    expect(other.seen[1]!["x-api-key"]).toBeUndefined();

    // A redirect into the configured origin gets that origin's headers.
    await safeFetch(`${other.origin}/to-api`, { ...ALLOW, originHeaders });
    expect(other.seen[2]!["x-api-key"]).toBeUndefined();
    expect(api.seen[1]!["x-api-key"]).toBe("api-only");
  });

  it.each([
    ["a URL with a path", { "http://127.0.0.1:1/v1": {} }],
    ["a non-http scheme", { "ftp://127.0.0.1": {} }],
    ["no URL at all", { "api.example.com": {} }],
    ["the same origin twice", { "http://127.0.0.1": {}, "http://127.0.0.1:80/": {} }],
    ["a bad header name", { "http://127.0.0.1:1": { "bad name": "x" } }],
  ])("refuses originHeaders with %s, sending nothing", async (_name, originHeaders) => {
    const api = await origin();
    await expect(
      safeFetch(api.origin, { ...ALLOW, originHeaders: originHeaders as never }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(api.seen).toEqual([]);
  });
});

describe("web_fetch: configured headers", () => {
  it("sends originHeaders only to their origin, whatever URL the model asks for", async () => {
    const evil = await origin();
    const api = await origin((p) => (p === "/leak" ? `${evil.origin}/x` : undefined));
    const tool = createWebFetchTool({
      allow: ["127.0.0.1"],
      originHeaders: { [api.origin]: { authorization: "Bearer k", "x-api-key": "k" } },
    });
    const run = (url: string) => tool.execute({ url }, toolContext()) as Promise<JsonObject>;
    await run(`${api.origin}/data`);
    expect(api.seen[0]).toMatchObject({ authorization: "Bearer k", "x-api-key": "k" });
    await run(`${evil.origin}/direct`);
    await run(`${api.origin}/leak`);
    expect(evil.seen).toHaveLength(2);
    for (const seen of evil.seen) {
      expect([seen.authorization, seen["x-api-key"]]).toEqual([undefined, undefined]);
    }
  });

  it.each([
    "Authorization",
    "cookie",
    "Proxy-Authorization",
    "X-Api-Key",
    "x-auth-token",
    "X-Goog-Api-Key",
    "apikey",
    "x-session",
  ])("refuses the credential-like header %s in the headers sent to every URL", (name) => {
    expect(() => createWebFetchTool({ headers: { [name]: "secret" } })).toThrow(
      InvalidArgumentError,
    );
  });

  it("keeps harmless headers for every URL, but not after a redirect to another origin", async () => {
    const other = await origin();
    const first = await origin(() => `${other.origin}/next`);
    const tool = createWebFetchTool({
      allow: ["127.0.0.1"],
      headers: { "accept-language": "fr", from: "ops@example.com" },
    });
    await tool.execute({ url: `${first.origin}/` }, toolContext());
    expect(first.seen[0]).toMatchObject({ "accept-language": "fr", from: "ops@example.com" });
    expect(other.seen[0]!["accept-language"]).toBe("fr");
    expect(other.seen[0]!.from).toBeUndefined();
  });

  it("refuses a bad originHeaders key when the tool is created", () => {
    expect(() =>
      createWebFetchTool({ originHeaders: { "https://api.example.com/v1": { "x-api-key": "k" } } }),
    ).toThrow(InvalidArgumentError);
  });
});
