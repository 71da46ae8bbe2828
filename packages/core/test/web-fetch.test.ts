import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import {
  BasicToolRunner,
  classifyAddress,
  createSsrfGuard,
  createWebFetchTool,
  htmlToMarkdown,
  InvalidArgumentError,
  type JsonObject,
  type SafeFetchOptions,
  SsrfBlockedError,
  safeFetch,
  TimeoutError,
  type ToolContext,
  WebFetchError,
} from "../src/index.js";

// ---------------------------------------------------------------------------------------
// Real HTTP servers on 127.0.0.1 (port 0), every one closed after its test.

interface TestServer {
  port: number;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** Paths requested, in order. */
  hits: string[];
  /** Host headers received, in order. */
  hosts: string[];
}

const servers: Server[] = [];

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, server: TestServer) => void,
): Promise<TestServer> {
  const state: TestServer = { port: 0, origin: "", hits: [], hosts: [] };
  const server = createServer((req, res) => {
    state.hits.push(req.url ?? "");
    state.hosts.push(req.headers.host ?? "");
    handler(req, res, state);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.port = (server.address() as AddressInfo).port;
  state.origin = `http://127.0.0.1:${state.port}`;
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

function reply(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { "content-type": type });
  res.end(body);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

function toolContext(signal = new AbortController().signal): ToolContext {
  return {
    signal,
    sessionKey: "agent:test:main",
    agentId: "test",
    runId: "run-1",
    toolCallId: "call-1",
    emit() {},
  };
}

const ALLOW_LOOPBACK: SafeFetchOptions = { allow: ["127.0.0.1"] };

const SAMPLE_PAGE = [
  "<!doctype html><html><head><title>Sample &amp; Page</title>",
  "<style>body { color: red }</style><script>window.tracking = 'alert'</script></head>",
  '<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>',
  "<main>",
  "<h1>Release <em>notes</em></h1>",
  '<p>Read the <a href="/docs?page=2">full docs</a> before <strong>upgrading</strong>, and run <code>npm ci</code>.',
  "<p>Second paragraph<br>on two lines &mdash; with entities &lt;ok&gt;.",
  "<ul><li>Faster<li>Smaller <ul><li>core: 12 kB</li><li>cli: 40 kB</li></ul></li><li>Safer</li></ul>",
  '<ol start="3"><li>third</li><li>fourth</li></ol>',
  '<pre><code class="language-ts">const x = 1;\nif (x &lt; 2) {\n  run();\n}\n</code></pre>',
  "<blockquote><p>Quoted</p></blockquote>",
  "<table><tr><th>Name</th><th>Size</th></tr><tr><td>core</td><td>12</td></tr></table>",
  '<div hidden>hidden text</div><div style="display:none">invisible text</div>',
  "<form><input value=x><button>Subscribe</button></form>",
  "</main><footer>Footer links</footer></body></html>",
].join("\n");

// ---------------------------------------------------------------------------------------

describe("SSRF guard", () => {
  it("refuses a server on 127.0.0.1 by default and sends it nothing", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "secret"));
    const error = await rejection(safeFetch(`${server.origin}/admin`));
    expect(SsrfBlockedError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "loopback", address: "127.0.0.1" });
    expect(server.hits).toEqual([]);
  });

  it("fetches from 127.0.0.1 when the allowlist names it, as an IP or as a CIDR", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "hello"));
    const byIp = await safeFetch(`${server.origin}/a`, { allow: ["127.0.0.1"] });
    const byCidr = await safeFetch(`${server.origin}/b`, { allow: ["127.0.0.0/8"] });
    expect([byIp.status, byIp.text(), byCidr.text()]).toEqual([200, "hello", "hello"]);
    expect(server.hits).toEqual(["/a", "/b"]);
  });

  it("an allowlisted network admits only addresses inside it", async () => {
    const error = await rejection(safeFetch("http://10.0.0.1/", { allow: ["127.0.0.0/8"] }));
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "private", address: "10.0.0.1" });
  });

  it("refuses a redirect from an allowed host into 127.0.0.1 and never contacts it", async () => {
    const internal = await serve((_req, res) => reply(res, 200, "text/plain", "internal secret"));
    const external = await serve((_req, res) => {
      res.writeHead(302, { location: `${internal.origin}/secret` });
      res.end();
    });
    // "public.test" stands for a public host: allowed by name, served by the local server.
    const options: SafeFetchOptions = {
      allow: ["public.test"],
      resolveHost: async () => ["127.0.0.1"],
    };
    const error = await rejection(safeFetch(`http://public.test:${external.port}/go`, options));
    expect(error).toMatchObject({
      code: "SSRF_BLOCKED",
      reason: "loopback",
      url: `${internal.origin}/secret`,
    });
    expect(external.hits).toEqual(["/go"]);
    expect(internal.hits).toEqual([]);
  });

  it.each([
    ["http://169.254.169.254/latest/meta-data/iam/", "metadata"],
    ["http://metadata.google.internal/computeMetadata/v1/", "metadata"],
    ["http://[fd00:ec2::254]/latest/meta-data/", "metadata"],
    ["http://[::ffff:a9fe:a9fe]/", "metadata"],
    ["http://localhost/", "loopback"],
    ["file:///etc/passwd", "scheme"],
  ])("refuses a redirect from an allowed server to %s (%s)", async (target, reason) => {
    const server = await serve((_req, res) => {
      res.writeHead(301, { location: target });
      res.end();
    });
    const error = await rejection(safeFetch(`${server.origin}/start`, ALLOW_LOOPBACK));
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason });
    expect(server.hits).toEqual(["/start"]);
  });

  it.each([
    ["decimal", "2130706433", "loopback"],
    ["octal", "0177.0.0.1", "loopback"],
    ["hex with a short form", "0x7f.1", "loopback"],
    ["one hex number", "0x7f000001", "loopback"],
    ["octal as one number", "017700000001", "loopback"],
    ["short", "127.1", "loopback"],
    ["other loopback", "127.8.9.10", "loopback"],
    ["full-width digits", "１２７.０.０.１", "loopback"],
    ["IPv4-mapped IPv6", "[::ffff:127.0.0.1]", "loopback"],
    ["IPv4-mapped IPv6 in hex", "[::ffff:7f00:1]", "loopback"],
    ["IPv4-mapped IPv6 written out", "[0:0:0:0:0:ffff:127.0.0.1]", "loopback"],
    ["IPv4-compatible IPv6", "[::127.0.0.1]", "loopback"],
    ["NAT64 IPv6", "[64:ff9b::7f00:1]", "loopback"],
    ["6to4 IPv6", "[2002:7f00:1::]", "loopback"],
    ["IPv6 loopback", "[::1]", "loopback"],
    ["localhost", "localhost", "loopback"],
    ["localhost with a trailing dot in capitals", "LOCALHOST.", "loopback"],
    ["a .localhost name", "app.localhost", "loopback"],
    ["zero", "0", "unspecified"],
    ["0.0.0.0", "0.0.0.0", "unspecified"],
    ["IPv6 unspecified", "[::]", "unspecified"],
    ["10/8", "10.1.2.3", "private"],
    ["172.16/12", "172.31.255.1", "private"],
    ["192.168/16", "192.168.0.1", "private"],
    ["IPv6 unique local", "[fc00::1]", "private"],
    ["100.64/10", "100.64.0.1", "cgnat"],
    ["169.254/16", "169.254.10.10", "link-local"],
    ["IPv6 link-local", "[fe80::1]", "link-local"],
    ["multicast", "224.0.0.1", "multicast"],
    ["IPv6 multicast", "[ff02::1]", "multicast"],
    ["broadcast", "255.255.255.255", "broadcast"],
    ["documentation range", "192.0.2.10", "reserved"],
    ["Alibaba metadata", "100.100.100.200", "metadata"],
    ["mapped private", "[::ffff:10.0.0.1]", "private"],
  ])("refuses %s: %s (%s) without connecting", async (_label, host, reason) => {
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "secret"));
    const error = await rejection(safeFetch(`http://${host}:${server.port}/`));
    expect(SsrfBlockedError.isInstance(error), String(error)).toBe(true);
    expect((error as SsrfBlockedError).reason).toBe(reason);
    expect(server.hits).toEqual([]);
  });

  it("refuses a host name when ANY of its resolved addresses is internal", async () => {
    const error = await rejection(
      safeFetch("http://mixed.test/", { resolveHost: async () => ["93.184.215.14", "10.0.0.5"] }),
    );
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "private", address: "10.0.0.5" });
  });

  it("connects to the address that was checked, not to a later DNS answer (rebinding)", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "pinned"));
    let lookups = 0;
    // First answer passes the check; every later answer would point somewhere internal.
    const resolveHost = async () => (++lookups === 1 ? ["127.0.0.1"] : ["10.0.0.1"]);
    const page = await safeFetch(`http://rebind.test:${server.port}/`, {
      allow: ["127.0.0.1"],
      resolveHost,
    });
    expect(page.text()).toBe("pinned");
    expect(lookups).toBe(1);
    expect(server.hosts).toEqual([`rebind.test:${server.port}`]);
  });

  it("checks every redirect hop against a fresh DNS answer", async () => {
    const server = await serve((req, res) => {
      if (req.url === "/first") {
        res.writeHead(307, { location: "/second" });
        res.end();
      } else reply(res, 200, "text/plain", "should not be reached");
    });
    let lookups = 0;
    const error = await rejection(
      safeFetch(`http://rebind.test:${server.port}/first`, {
        allow: ["127.0.0.1"],
        resolveHost: async () => (++lookups === 1 ? ["127.0.0.1"] : ["10.0.0.1"]),
      }),
    );
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "private", address: "10.0.0.1" });
    expect(server.hits).toEqual(["/first"]);
  });

  it.each([
    "file:///etc/passwd",
    "ftp://example.com/file",
    "gopher://example.com:70/_x",
    "data:text/plain,hello",
    "ws://example.com/socket",
  ])("refuses the non-http scheme of %s", async (url) => {
    const error = await rejection(safeFetch(url));
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "scheme" });
  });

  it("an allowlisted *.domain admits its subdomains whatever they resolve to, not the domain itself", async () => {
    const guard = createSsrfGuard({
      allow: ["*.corp.test"],
      resolveHost: async () => ["10.1.1.1"],
    });
    const target = await guard.check(new URL("http://wiki.corp.test/page"));
    expect(target.addresses).toEqual([{ address: "10.1.1.1", family: 4 }]);
    const error = await rejection(guard.check(new URL("http://corp.test/")));
    expect(error).toMatchObject({ code: "SSRF_BLOCKED", reason: "private" });
  });

  it("an allowlist entry that is neither an IP, a CIDR nor a host is a typed error", () => {
    expect(() => createSsrfGuard({ allow: ["10.0.0.0/33"] })).toThrow(InvalidArgumentError);
    expect(() => createSsrfGuard({ allow: ["not a host"] })).toThrow(/allow: "not a host"/);
  });

  it("classifies public addresses as fetchable and internal ones with their reason", () => {
    expect(classifyAddress("93.184.215.14")).toBeUndefined();
    expect(classifyAddress("2606:4700::1111")).toBeUndefined();
    expect(classifyAddress("::ffff:169.254.169.254")).toBe("metadata");
    expect(classifyAddress("172.15.0.1")).toBeUndefined();
    expect(classifyAddress("172.32.0.1")).toBeUndefined();
    expect(classifyAddress("172.16.0.1")).toBe("private");
  });

  it("a URL with credentials in it is refused as invalid input", async () => {
    const error = await rejection(safeFetch("http://user:pass@example.com/"));
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
  });
});

describe("safeFetch caps", () => {
  async function redirectChain() {
    return await serve((req, res) => {
      const left = Number(req.url?.split("/")[2]);
      if (left > 0) {
        res.writeHead(302, { location: `/hop/${left - 1}` });
        res.end();
      } else reply(res, 200, "text/plain", "arrived");
    });
  }

  it("follows up to maxRedirects redirects and reports each one", async () => {
    const server = await redirectChain();
    const page = await safeFetch(`${server.origin}/hop/2`, { ...ALLOW_LOOPBACK, maxRedirects: 2 });
    expect(page.text()).toBe("arrived");
    expect(page.redirects).toEqual([`${server.origin}/hop/1`, `${server.origin}/hop/0`]);
    expect(page.finalUrl).toBe(`${server.origin}/hop/0`);
  });

  it("refuses the redirect past maxRedirects (default 5) with too-many-redirects", async () => {
    const server = await redirectChain();
    const five = await safeFetch(`${server.origin}/hop/5`, ALLOW_LOOPBACK);
    expect(five.redirects).toHaveLength(5);
    const error = await rejection(safeFetch(`${server.origin}/hop/6`, ALLOW_LOOPBACK));
    expect(WebFetchError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "WEB_FETCH_FAILED", kind: "too-many-redirects" });
    const none = await rejection(
      safeFetch(`${server.origin}/hop/1`, { ...ALLOW_LOOPBACK, maxRedirects: 0 }),
    );
    expect(none).toMatchObject({ kind: "too-many-redirects" });
  });

  it("cuts an endless body at maxBytes, reports truncated, and closes the connection", async () => {
    let closed!: () => void;
    const connectionClosed = new Promise<void>((resolve) => {
      closed = resolve;
    });
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const chunk = Buffer.alloc(16 * 1024, "a");
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {
          // keep writing until the socket pushes back
        }
      };
      res.on("drain", pump);
      res.on("close", closed);
      pump();
    });
    const page = await safeFetch(server.origin, { ...ALLOW_LOOPBACK, maxBytes: 1000 });
    expect(page.body.byteLength).toBe(1000);
    expect(page.truncated).toBe(true);
    await connectionClosed;
  });

  it("a body that fits in maxBytes is whole and not truncated", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "x".repeat(1000)));
    const page = await safeFetch(server.origin, { ...ALLOW_LOOPBACK, maxBytes: 1000 });
    expect([page.body.byteLength, page.truncated]).toEqual([1000, false]);
  });

  it("decompresses gzip and applies maxBytes to the decompressed size", async () => {
    const bomb = gzipSync(Buffer.alloc(5 * 1024 * 1024, "z"));
    const server = await serve((req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" });
      res.end(req.url === "/small" ? gzipSync("compressed hello") : bomb);
    });
    const small = await safeFetch(`${server.origin}/small`, ALLOW_LOOPBACK);
    expect(small.text()).toBe("compressed hello");
    expect(small.headers.get("content-encoding")).toBeNull();
    const big = await safeFetch(`${server.origin}/big`, { ...ALLOW_LOOPBACK, maxBytes: 10_000 });
    expect([big.body.byteLength, big.truncated]).toEqual([10_000, true]);
  });

  it("times out with TimeoutError when the server never answers", async () => {
    const server = await serve(() => {
      // never responds
    });
    const error = await rejection(safeFetch(server.origin, { ...ALLOW_LOOPBACK, timeoutMs: 150 }));
    expect(TimeoutError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 150 });
  });

  it("times out with TimeoutError when the body stalls half way", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": "100" });
      res.write("only part of it");
    });
    const error = await rejection(safeFetch(server.origin, { ...ALLOW_LOOPBACK, timeoutMs: 150 }));
    expect(error).toMatchObject({ code: "TIMEOUT" });
  });

  it("times out with TimeoutError when DNS never answers", async () => {
    const error = await rejection(
      safeFetch("http://slow-dns.test/", {
        timeoutMs: 100,
        resolveHost: () => new Promise<string[]>(() => {}),
      }),
    );
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 100 });
  });

  it("an aborted signal cancels the fetch with AbortedError", async () => {
    const controller = new AbortController();
    const server = await serve(() => controller.abort());
    const error = await rejection(
      safeFetch(server.origin, { ...ALLOW_LOOPBACK, signal: controller.signal }),
    );
    expect(error).toMatchObject({ code: "ABORTED" });
  });

  it("a refused connection is a WebFetchError of kind network", async () => {
    const server = await serve(() => {});
    const { port } = server;
    await new Promise<void>((resolve) => (servers.pop() as Server).close(() => resolve()));
    const error = await rejection(safeFetch(`http://127.0.0.1:${port}/`, ALLOW_LOOPBACK));
    expect(error).toMatchObject({ code: "WEB_FETCH_FAILED", kind: "network" });
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
  });

  it("a 303 turns a POST into a GET, and credentials are not sent to another origin", async () => {
    const seen: Array<{ method?: string; authorization?: string; body: string }> = [];
    const record = (req: IncomingMessage, done: () => void) => {
      let body = "";
      req.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      req.on("end", () => {
        seen.push({ method: req.method, authorization: req.headers.authorization, body });
        done();
      });
    };
    const other = await serve((req, res) =>
      record(req, () => reply(res, 200, "text/plain", "done")),
    );
    const first = await serve((req, res) =>
      record(req, () => {
        res.writeHead(303, { location: `${other.origin}/result` });
        res.end();
      }),
    );
    const page = await safeFetch(`${first.origin}/submit`, {
      ...ALLOW_LOOPBACK,
      method: "POST",
      body: "q=1",
      headers: {
        authorization: "Bearer secret",
        "content-type": "application/x-www-form-urlencoded",
      },
    });
    expect(page.text()).toBe("done");
    expect(seen).toEqual([
      { method: "POST", authorization: "Bearer secret", body: "q=1" },
      { method: "GET", authorization: undefined, body: "" },
    ]);
  });

  it("decodes the body with the declared charset", async () => {
    const server = await serve((_req, res) =>
      reply(res, 200, "text/plain; charset=iso-8859-1", Buffer.from([0x63, 0x61, 0x66, 0xe9])),
    );
    const page = await safeFetch(server.origin, ALLOW_LOOPBACK);
    expect([page.mediaType, page.charset, page.text()]).toEqual([
      "text/plain",
      "iso-8859-1",
      "café",
    ]);
  });
});

describe("web_fetch tool", () => {
  const tool = createWebFetchTool({ allow: ["127.0.0.1"] });
  const run = (input: JsonObject) => tool.execute(input, toolContext()) as Promise<JsonObject>;

  it("returns a page as markdown: headings, links, lists, code and tables kept; scripts, styles, navigation and hidden parts dropped", async () => {
    const server = await serve((_req, res) =>
      reply(res, 200, "text/html; charset=utf-8", SAMPLE_PAGE),
    );
    const out = await run({ url: `${server.origin}/notes` });
    expect(out).toMatchObject({
      status: 200,
      contentType: "text/html",
      format: "markdown",
      title: "Sample & Page",
      truncated: false,
    });
    expect(out.content).toBe(
      [
        "# Release *notes*",
        `Read the [full docs](${server.origin}/docs?page=2) before **upgrading**, and run \`npm ci\`.`,
        "Second paragraph\non two lines — with entities <ok>.",
        "- Faster\n- Smaller\n  - core: 12 kB\n  - cli: 40 kB\n- Safer",
        "3. third\n4. fourth",
        "```ts\nconst x = 1;\nif (x < 2) {\n  run();\n}\n```",
        "> Quoted",
        "| Name | Size |\n| --- | --- |\n| core | 12 |",
      ].join("\n\n"),
    );
  });

  it("format text returns the page as plain text without markup or link targets", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/html", SAMPLE_PAGE));
    const out = await run({ url: server.origin, format: "text" });
    expect(out.format).toBe("text");
    const content = String(out.content);
    expect(
      content.startsWith("Release notes\n\nRead the full docs before upgrading, and run npm ci."),
    ).toBe(true);
    expect(content).not.toMatch(/[*#[\]]|\(http/);
  });

  it("format html returns the page as served", async () => {
    const server = await serve((_req, res) => reply(res, 200, "text/html", SAMPLE_PAGE));
    const out = await run({ url: server.origin, format: "html" });
    expect([out.format, out.content]).toEqual(["html", SAMPLE_PAGE]);
  });

  it("asks for markdown first and passes server-sent markdown through", async () => {
    const server = await serve((req, res) =>
      reply(res, 200, "text/markdown", `accept: ${req.headers.accept}`),
    );
    const out = await run({ url: server.origin });
    expect(out.format).toBe("markdown");
    expect(String(out.content)).toMatch(/^accept: text\/markdown,/);
  });

  it("pretty-prints JSON and passes plain text through", async () => {
    const server = await serve((req, res) =>
      req.url === "/json"
        ? reply(res, 200, "application/json", '{"a":1,"b":[true]}')
        : reply(res, 200, "text/plain", "  plain *text*  "),
    );
    const json = await run({ url: `${server.origin}/json` });
    expect([json.format, json.content]).toEqual([
      "json",
      '{\n  "a": 1,\n  "b": [\n    true\n  ]\n}',
    ]);
    const text = await run({ url: `${server.origin}/text` });
    expect([text.format, text.content]).toEqual(["text", "  plain *text*  "]);
  });

  it("refuses a binary content type without reading it", async () => {
    const server = await serve((_req, res) => reply(res, 200, "image/png", Buffer.alloc(1024)));
    const error = await rejection(run({ url: server.origin }));
    expect(error).toMatchObject({ code: "WEB_FETCH_FAILED", kind: "unsupported-content-type" });
  });

  it("an HTTP error status fails the call with that status", async () => {
    const server = await serve((_req, res) => reply(res, 404, "text/html", "<h1>Not here</h1>"));
    const error = await rejection(run({ url: server.origin }));
    expect(error).toMatchObject({ code: "WEB_FETCH_FAILED", kind: "http", statusCode: 404 });
    expect((error as Error).message).toMatch(/HTTP 404 .*Not here/);
  });

  it("a call's maxBytes lowers the tool's cap but cannot raise it", async () => {
    const capped = createWebFetchTool({ allow: ["127.0.0.1"], maxBytes: 100 });
    const server = await serve((_req, res) => reply(res, 200, "text/plain", "y".repeat(5000)));
    const raised = (await capped.execute(
      { url: server.origin, maxBytes: 10_000 },
      toolContext(),
    )) as JsonObject;
    expect([raised.bytes, raised.truncated]).toEqual([100, true]);
    const lowered = (await capped.execute(
      { url: server.origin, maxBytes: 10 },
      toolContext(),
    )) as JsonObject;
    expect([lowered.content, lowered.truncated]).toEqual(["y".repeat(10), true]);
  });

  it("invalid input is an InvalidArgumentError naming the field", async () => {
    const badUrl = await rejection(run({ url: 5 as unknown as string }));
    expect(InvalidArgumentError.isInstance(badUrl)).toBe(true);
    expect((badUrl as Error).message).toMatch(/web_fetch url:/);
    const badFormat = await rejection(run({ url: "https://example.com/", format: "pdf" }));
    expect((badFormat as Error).message).toMatch(/web_fetch format:/);
  });

  it("through a tool runner, a blocked URL becomes an error result the model can read", async () => {
    const runner = new BasicToolRunner({ tools: [createWebFetchTool()] });
    const result = await runner.execute(
      {
        type: "tool-call",
        toolCallId: "c1",
        toolName: "web_fetch",
        input: { url: "http://169.254.169.254/" },
      },
      toolContext(),
    );
    expect(result.isError).toBe(true);
    expect(String(result.output)).toMatch(
      /SSRF_BLOCKED: refused to fetch http:\/\/169\.254\.169\.254\/.*metadata/,
    );
  });
});

describe("HTML extraction", () => {
  it("keeps only the <main> content and takes the title from <title>", () => {
    const { title, content } = htmlToMarkdown(SAMPLE_PAGE);
    expect(title).toBe("Sample & Page");
    expect(content).not.toMatch(
      /Home|About|Footer links|color: red|tracking|hidden text|invisible text|Subscribe/,
    );
  });

  it("resolves relative links against the page URL and <base>", () => {
    const page =
      '<base href="/docs/"><p><a href="intro">Intro</a> <img src="a.png" alt="Diagram"></p>';
    expect(htmlToMarkdown(page, { baseUrl: "https://example.com/x/y" }).content).toBe(
      "[Intro](https://example.com/docs/intro) ![Diagram](https://example.com/docs/a.png)",
    );
  });

  it("survives unclosed tags, stray end tags and deep nesting", () => {
    const deep = `${"<div>".repeat(5000)}deep text${"</div>".repeat(5000)}`;
    expect(htmlToMarkdown(deep).content).toBe("deep text");
    expect(htmlToMarkdown("<p>one<p>two</span></b><li>three").content).toBe(
      "one\n\ntwo\n\n- three",
    );
  });
});
