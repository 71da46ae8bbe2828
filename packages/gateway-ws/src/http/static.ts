/** The dashboard: static files served at `/`. */
import { existsSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webmanifest": "application/manifest+json",
  ".txt": "text/plain; charset=utf-8",
};

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** A `Host` header that is a name or an IP address, with an optional port, and nothing else. */
const PLAIN_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * The dashboard's Content-Security-Policy. Its WebSocket may go to its own host only: `'self'`
 * covers `ws:`/`wss:` of the page's host in browsers implementing CSP 3, and the request's own
 * host is named for the others — never any host (`ws: wss:`), to which a script slipped into
 * the page could send the operator's token.
 */
function contentSecurityPolicy(host: string | undefined): string {
  const socket = host !== undefined && PLAIN_HOST.test(host) ? ` ws://${host} wss://${host}` : "";
  return `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'${socket}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`;
}

/**
 * The headers of every answer under the dashboard's path, not only its files: a 404, a method
 * it does not serve, a refused host and the page saying it is not installed get the same
 * Content-Security-Policy, `X-Content-Type-Options: nosniff`, `Referrer-Policy` and
 * `X-Frame-Options` (see {@link contentSecurityPolicy}).
 */
export function dashboardHeaders(req: IncomingMessage): Record<string, string> {
  return {
    ...SECURITY_HEADERS,
    "content-security-policy": contentSecurityPolicy(req.headers.host),
  };
}

/**
 * The dashboard directory shipped with the package (`dashboard/` beside `dist/`), or
 * `undefined` when it is not there.
 */
export function defaultDashboardDir(): string | undefined {
  for (const relative of ["../dashboard/", "../../dashboard/"]) {
    const dir = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(join(dir, "index.html"))) return dir;
  }
  return undefined;
}

/**
 * Serves a file of `root` for a GET/HEAD request. Returns false when there is no such file
 * (the caller answers 404). Paths that try to leave `root` are never served: no `..` or
 * dotfile segment (`.env`, `.git/`), no trailing slash after a file name, and no symlink
 * whose target lies outside `root`.
 */
export async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  root: string,
  pathname: string,
  basePath?: string,
): Promise<boolean> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return false;
  }
  if (decoded.includes("\0")) return false;
  const relative = decoded === "/" || decoded === "" ? "index.html" : decoded.replace(/^\/+/, "");
  const segments = relative.split(/[/\\]/);
  if (segments.some((segment) => segment === "" || segment.startsWith("."))) return false;
  let file: string;
  try {
    // Both through their symlinks, so a link inside `root` cannot lead out of it.
    const base = await realpath(resolve(root));
    file = await realpath(resolve(base, relative));
    if (!file.startsWith(base + sep)) return false;
    const info = await stat(file);
    if (!info.isFile()) return false;
  } catch {
    return false;
  }
  let body = await readFile(file);
  if (basePath !== undefined && relative === "index.html") {
    // Tell the page where its WebSocket is (it connects to `/` otherwise).
    const meta = `<meta name="beamclaw-ws-path" content="${escapeAttribute(basePath)}" />`;
    body = Buffer.from(body.toString("utf8").replace(/<head>/i, `<head>\n    ${meta}`), "utf8");
  }
  res.writeHead(200, {
    "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
    "content-length": String(body.length),
    "cache-control": "no-cache",
    ...dashboardHeaders(req),
  });
  res.end(req.method === "HEAD" ? undefined : body);
  return true;
}

function escapeAttribute(value: string): string {
  return value.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);
}
