/**
 * A local HTTP server standing in for the app behind the webhook channel's callback URL, for
 * the tests that run the standalone gateway with a webhook channel. Not a test file itself.
 */
import { rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { verifyWebhookSignature } from "@beamclaw/channels/webhook";
import type { StartedGateway } from "../src/cli/bootstrap.js";
import { closeClients, type Wire } from "./support.js";
import { closeModelServers } from "./tools-support.js";

/** What the callback server received: signed events, and why any other request was refused. */
export interface Callback {
  url: string;
  events: Wire[];
  bad: string[];
}

/**
 * Starts the callback server on 127.0.0.1 (pushed to `servers`, which the caller closes):
 * each request whose signature `secret` verifies is kept in `events` and answered with a
 * platform message id.
 */
export async function callbackServer(secret: string, servers: Server[]): Promise<Callback> {
  const events: Wire[] = [];
  const bad: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        verifyWebhookSignature(secret, body, req.headers["x-beamclaw-signature"]);
        events.push(JSON.parse(body.toString("utf8")));
      } catch (error) {
        bad.push((error as Error).message);
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ messageId: `app-${events.length}` }));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/out`, events, bad };
}

/** What a test of the standalone gateway leaves open: gateways, HTTP servers, directories. */
export interface Leftovers {
  started: StartedGateway[];
  servers: Server[];
  dirs: string[];
}

/** Closes clients, then every gateway, server, model server and directory of `leftovers`. */
export async function closeLeftovers({ started, servers, dirs }: Leftovers): Promise<void> {
  await closeClients();
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await closeModelServers();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
}
