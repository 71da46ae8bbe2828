/**
 * The dashboard's `state` as a test reads it from a real Chromium: the page keeps it in its
 * module scope, so it is found in the page's heap through the DevTools protocol
 * (`Runtime.queryObjects`).
 */
import type { Page } from "playwright-core";

/**
 * The keys of every `Map` and the members of every `Set` held by the dashboard's `state`, by
 * field name, as found in the page's heap.
 */
export async function stateKeys(page: Page): Promise<Record<string, string[]>> {
  const cdp = await page.context().newCDPSession(page);
  try {
    const proto = await cdp.send("Runtime.evaluate", { expression: "Object.prototype" });
    const found = await cdp.send("Runtime.queryObjects", {
      prototypeObjectId: proto.result.objectId as string,
    });
    const res = await cdp.send("Runtime.callFunctionOn", {
      objectId: found.objects.objectId as string,
      returnByValue: true,
      functionDeclaration: `function () {
        const fields = ["sessions", "live", "streams", "approvals", "selected", "reloadTimers"];
        const states = this.filter((o) => fields.every((f) => Object.hasOwn(o, f)));
        if (states.length !== 1) throw new Error("found " + states.length + " dashboard states");
        const out = {};
        for (const [name, value] of Object.entries(states[0])) {
          if (value instanceof Map) out[name] = [...value.keys()].map(String);
          else if (value instanceof Set) out[name] = [...value].map(String);
        }
        return out;
      }`,
    });
    if (res.exceptionDetails !== undefined) {
      throw new Error(res.exceptionDetails.exception?.description ?? res.exceptionDetails.text);
    }
    return res.result.value as Record<string, string[]>;
  } finally {
    await cdp.detach();
  }
}
