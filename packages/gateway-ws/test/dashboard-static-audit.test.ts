/**
 * The dashboard's static file server over a real socket: what it refuses to serve outside its
 * directory (traversal in every spelling, symlinks leading out), and the headers it sends
 * (with every answer under its path, the router's 404s included).
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpCall as call, startStack, stopStacks } from "./support.js";

const SECRET = "top-secret-outside-the-dashboard";
let base: string;
let port: number;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "bc-dash-static-"));
  const dir = join(base, "dash");
  await mkdir(join(dir, "sub"), { recursive: true });
  await writeFile(join(base, "secret.txt"), SECRET);
  await mkdir(join(base, "outside"));
  await writeFile(join(base, "outside", "file.txt"), SECRET);
  await writeFile(
    join(dir, "index.html"),
    "<!doctype html><html><head><title>dash</title></head></html>",
  );
  await writeFile(join(dir, "app.js"), "console.log(1)");
  await writeFile(join(dir, "sub", "page.txt"), "inside");
  await writeFile(join(dir, ".env"), SECRET);
  await symlink(join(base, "secret.txt"), join(dir, "leak.txt"));
  await symlink(join(base, "outside"), join(dir, "linked"));
  await symlink("/etc/passwd", join(dir, "passwd.txt"));
  await symlink(join(dir, "app.js"), join(dir, "alias.js"));
  ({ port } = await startStack({ gateway: { dashboardDir: dir, basePath: "/gw" } }));
});

afterAll(async () => {
  await stopStacks();
  await rm(base, { recursive: true, force: true });
});

describe("dashboard static files", () => {
  it("serves nothing outside its directory, however the path is spelled", async () => {
    for (const path of [
      "/../secret.txt",
      "/..%2fsecret.txt",
      "/%2e%2e%2fsecret.txt",
      "/sub/..%2f..%2fsecret.txt",
      "/..%5csecret.txt",
      "/%5c..%5csecret.txt",
      "//etc/passwd",
      "/%2fetc%2fpasswd",
      "/..%252fsecret.txt",
      "/%00index.html",
      "/index.html%00.js",
    ]) {
      const reply = await call(port, path);
      expect(reply.status, path).toBe(404);
      expect(reply.text, path).not.toContain(SECRET);
      expect(reply.text, path).not.toContain("root:");
    }
  });

  it("does not follow a symlink out of its directory", async () => {
    for (const path of ["/leak.txt", "/linked/file.txt", "/passwd.txt"]) {
      const reply = await call(port, path);
      expect(reply.status, path).toBe(404);
      expect(reply.text, path).not.toContain(SECRET);
      expect(reply.text, path).not.toContain("root:");
    }
    // One that stays inside is served.
    const alias = await call(port, "/alias.js");
    expect(alias.status).toBe(200);
    expect(alias.text).toBe("console.log(1)");
  });

  it("serves no dotfiles", async () => {
    const reply = await call(port, "/.env");
    expect(reply.status).toBe(404);
    expect(reply.text).not.toContain(SECRET);
  });

  it("sends its content types and security headers, and a file is not a directory", async () => {
    const index = await call(port, "/");
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(index.headers["x-content-type-options"]).toBe("nosniff");
    expect(String(index.headers["content-security-policy"])).toContain("frame-ancestors 'none'");
    expect(String(index.headers["content-security-policy"])).not.toContain("unsafe-inline");
    expect(index.text).toContain('name="beamclaw-ws-path" content="/gw"');
    expect((await call(port, "/app.js")).headers["content-type"]).toBe(
      "text/javascript; charset=utf-8",
    );
    expect((await call(port, "/sub/page.txt")).headers["content-type"]).toBe(
      "text/plain; charset=utf-8",
    );
    expect((await call(port, "/index.html/")).status).toBe(404);
    expect((await call(port, "/app.js/")).status).toBe(404);
    expect((await call(port, "/sub")).status).toBe(404);
    const head = await call(port, "/app.js", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.text).toBe("");
  });

  it("sends the same security headers with every answer under its path, its 404s too", async () => {
    const index = await call(port, "/");
    const security = [
      "content-security-policy",
      "x-content-type-options",
      "referrer-policy",
      "x-frame-options",
    ];
    const expected = Object.fromEntries(security.map((name) => [name, index.headers[name]]));
    expect(expected["x-content-type-options"]).toBe("nosniff");
    for (const [method, path] of [
      ["GET", "/no-such-page"],
      ["GET", "/.env"],
      ["GET", "/..%2fsecret.txt"],
      ["HEAD", "/missing.js"],
      ["POST", "/"],
      ["DELETE", "/app.js"],
    ] as const) {
      const reply = await call(port, path, { method });
      expect(reply.status, `${method} ${path}`).toBe(404);
      const sent = Object.fromEntries(security.map((name) => [name, reply.headers[name]]));
      expect(sent, `${method} ${path}`).toEqual(expected);
    }
  });
});
