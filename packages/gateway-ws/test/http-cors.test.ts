/**
 * A page of an origin in `allowedOrigins` calls the OpenAI-compatible API across origins, as
 * a browser does it: a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) is
 * granted for the path's methods and the headers asked for, and every answer names the origin
 * (`Access-Control-Allow-Origin`, errors included, so the page can read them). Another origin
 * gets neither. Over real sockets against a started gateway.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AUTH, httpCall as call, startStack, stopStacks } from "./support.js";

afterEach(stopStacks);

const APP = "https://app.example.com";

describe("CORS for allowedOrigins", () => {
  it("grants an allowed origin's preflight and names the origin on its answers, errors included", async () => {
    const { port } = await startStack({
      gateway: { allowedOrigins: [APP] },
      responses: [{ text: "hello" }],
    });
    const preflight = await call(port, "/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(APP);
    expect(preflight.headers["access-control-allow-methods"]).toBe("POST");
    expect(preflight.headers["access-control-allow-headers"]).toBe(
      "authorization, content-type, x-stainless-os",
    );
    expect(preflight.headers["access-control-max-age"]).toBe("600");
    expect(preflight.headers.vary).toBe("Origin");
    expect(preflight.headers["access-control-allow-credentials"]).toBeUndefined();

    const models = await call(port, "/v1/models", {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "GET" },
    });
    expect(models.status).toBe(204);
    expect(models.headers["access-control-allow-methods"]).toBe("GET");
    expect(models.headers["access-control-allow-headers"]).toBeUndefined();

    const answer = await call(port, "/v1/chat/completions", {
      method: "POST",
      headers: { ...AUTH, origin: APP },
      body: { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBe(APP);
    // What the OpenAI SDKs read to retry (retry-after-ms first) is readable by the page.
    const exposed = String(answer.headers["access-control-expose-headers"]).split(/,\s*/);
    expect(exposed).toEqual(
      expect.arrayContaining([
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "www-authenticate",
      ]),
    );
    // An error answer is readable by the page too.
    const refused = await call(port, "/v1/models", { headers: { origin: APP } });
    expect(refused.status).toBe(401);
    expect(refused.headers["access-control-allow-origin"]).toBe(APP);
  });

  it("grants nothing to another origin, and a malformed header list is not echoed", async () => {
    const { port } = await startStack({ gateway: { allowedOrigins: [APP] } });
    const foreign = await call(port, "/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(foreign.status).not.toBe(204);
    expect(foreign.headers["access-control-allow-origin"]).toBeUndefined();
    const api = await call(port, "/v1/models", {
      headers: { ...AUTH, origin: "https://evil.example" },
    });
    expect(api.status).toBe(403);
    expect(api.headers["access-control-allow-origin"]).toBeUndefined();

    const odd = await call(port, "/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, x(y)",
      },
    });
    expect(odd.status).toBe(204);
    expect(odd.headers["access-control-allow-headers"]).toBeUndefined();
    // A plain OPTIONS (not a preflight) is still a 405 naming the methods.
    const plain = await call(port, "/v1/chat/completions", { method: "OPTIONS", headers: AUTH });
    expect(plain.status).toBe(405);
    expect(plain.headers.allow).toBe("POST");
  });
});
