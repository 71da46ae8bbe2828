/**
 * What `McpToolServer` checks of a server's configuration before it starts anything: a `url`
 * with credentials in it (`user:pass@`) is refused (they go in `headers`), `env` and `headers`
 * are records of strings that a process or a request can carry, and a stdio server's `cwd` is
 * a directory that exists (checked at `start()`). Each refusal is an `McpConfigError` naming
 * the server and the field, and no message, of a refusal or of a failure later, shows a URL's
 * userinfo or its query's values.
 */
import { rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError, ToolRegistry } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { McpConfigError, McpError, McpToolServer } from "../src/index.js";
import { childProcesses } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What `new McpToolServer(options)` throws (undefined if nothing). */
function refusal(options: object): unknown {
  try {
    new McpToolServer(options as never);
    return undefined;
  } catch (error) {
    return error;
  }
}

/** Checks that `error` is an `McpConfigError` of server `x` about `field`, and returns its message. */
function configError(error: unknown, field: string): string {
  expect(InvalidArgumentError.isInstance(error), `refused: ${String(error)}`).toBe(true);
  expect(error).toMatchObject({ server: "x", field });
  expect(McpConfigError.isInstance(error)).toBe(true);
  const message = (error as Error).message;
  expect(message).toContain('"x"');
  expect(message).toContain(field);
  return message;
}

describe("url", () => {
  it("with credentials (user:pass@) is refused at construction, pointing to headers, showing no password", () => {
    for (const url of [
      "https://alice:hunter2-secret@example.com/mcp",
      "http://token-secret-only@127.0.0.1:9/mcp",
    ]) {
      const message = configError(refusal({ name: "x", url }), "url");
      expect(message).toMatch(/credentials/);
      expect(message).toMatch(/headers/);
      expect(message).toMatch(/Authorization/);
      expect(message).not.toMatch(/hunter2|token-secret|alice/);
    }
  });

  it("that does not parse is refused without echoing its userinfo", () => {
    const message = configError(refusal({ name: "x", url: "http://bob:pw-secret@[::1" }), "url");
    expect(message).toMatch(/is not a URL/);
    expect(message).not.toContain("pw-secret");
  });

  it("a failure's message never shows the URL's query values, even when the server echoes them", async () => {
    // An endpoint that refuses, echoing the whole URL it was asked for (and the bare key).
    const http: Server = createServer((req, res) => {
      const host = req.headers.host;
      const key = new URL(`http://${host}${req.url}`).searchParams.get("api_key");
      res.writeHead(403).end(`forbidden: http://${host}${req.url} (key ${key})`);
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const { port } = http.address() as { port: number };
    const server = new McpToolServer({
      name: "x",
      url: `http://127.0.0.1:${port}/mcp?api_key=sk-live-0123456789&region=eu`,
    });
    cleanups.push(() => server.stop());
    const error = await server.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toMatch(/HTTP 403/);
    expect(message).toContain("api_key=***");
    expect(message).not.toContain("sk-live-0123456789");
  });
});

describe("env", () => {
  it("is refused unless a record of valid variable names to strings without NUL", () => {
    const cases: Array<[unknown, RegExp]> = [
      [["A=1"], /must be an object/],
      ["A=1", /must be an object/],
      [null, /must be an object/],
      [{ "BAD NAME": "1" }, /"BAD NAME"/],
      [{ "A=B": "1" }, /"A=B"/],
      [{ "": "1" }, /""/],
      [{ "1ST": "1" }, /"1ST"/],
      [{ PORT: 8080 }, /PORT must be a string/],
      [{ TOKEN: "ab\0cd" }, /TOKEN holds a NUL/],
    ];
    for (const [env, reason] of cases) {
      const message = configError(refusal({ name: "x", command: process.execPath, env }), "env");
      expect(message).toMatch(reason);
    }
    // Valid ones pass.
    expect(
      refusal({ name: "x", command: process.execPath, env: { _A1: "", PATH: "/bin" } }),
    ).toBeUndefined();
  });
});

describe("headers", () => {
  it("are refused unless valid names to values without CR, LF or NUL; a value is never shown", () => {
    const url = "http://127.0.0.1:9/mcp";
    const cases: Array<[unknown, RegExp]> = [
      [["Authorization: x"], /must be an object/],
      [{ "bad name": "v" }, /"bad name"/],
      [{ "x:y": "v" }, /"x:y"/],
      [{ Authorization: 42 }, /Authorization must be a string/],
      [{ Authorization: "Bearer secret-1\r\nX-Injected: 1" }, /CR, LF or NUL/],
      [{ Authorization: "Bearer secret-1\n" }, /CR, LF or NUL/],
      [{ Authorization: "Bearer secret-1\0" }, /CR, LF or NUL/],
      [{ Authorization: "Bearer secret-1\u2028" }, /beyond U\+00FF/],
    ];
    for (const [headers, reason] of cases) {
      const message = configError(refusal({ name: "x", url, headers }), "headers");
      expect(message).toMatch(reason);
      expect(message).not.toContain("secret-1");
    }
    expect(refusal({ name: "x", url, headers: { Authorization: "Bearer ok" } })).toBeUndefined();
  });
});

describe("cwd", () => {
  it("that is not a string is refused at construction", () => {
    for (const cwd of [42, "", "/tmp\0x"]) {
      configError(refusal({ name: "x", command: process.execPath, cwd }), "cwd");
    }
  });

  it("that is a file, not a directory, fails start() with an McpConfigError; nothing is started", async () => {
    const file = join(tmpdir(), `beamclaw-mcp-cwd-${process.pid}.txt`);
    await writeFile(file, "not a directory");
    cleanups.push(() => rm(file, { force: true }));
    const registry = new ToolRegistry();
    const server = new McpToolServer({
      name: "x",
      command: process.execPath,
      args: ["-e", "setInterval(() => {}, 1000)"],
      cwd: file,
    });
    cleanups.push(() => server.stop());
    const before = childProcesses();
    const error = await server.start({ registry }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const message = configError(error, "cwd");
    expect(message).toContain(`${file} is not a directory`);
    expect(registry.names()).toEqual([]);
    expect(childProcesses()).toBe(before);
  });
});
