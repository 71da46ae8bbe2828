/**
 * The runtime's session supervisor itself restarted by the runtime's root supervisor (it
 * was killed, or gave up after too many session crashes): the messages its sessions held
 * unfinished are in the durable queue, and they run again at once, before messages sent
 * after the restart, rather than wait for the next start of the whole runtime.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Process } from "../src/runtime/actor.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { deferred, lastUserText, scriptedRuntime, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function sessionsSupervisor(runtime: {
  supervisor: {
    whichChildren(): Promise<Array<{ id: string; process: Process | undefined }>>;
  } | null;
}): Promise<Process | undefined> {
  const children = await runtime.supervisor!.whichChildren();
  return children.find((child) => child.id === "sessions")?.process;
}

describe("the session supervisor restarted by the runtime's root supervisor", () => {
  for (const how of ["killed", "crashed"] as const) {
    it(`${how}: the unfinished message runs again at once, before a message sent after the restart`, async () => {
      const hold = deferred<void>();
      const asked: string[] = [];
      const answer: ScriptEntry = (request) => {
        const last = lastUserText(request.messages);
        asked.push(last);
        // The first call for A is held (until the restart cuts it); later ones answer.
        if (asked.length > 1) return `answer: ${last}`;
        return {
          events: [
            { type: "wait", until: hold.promise },
            { type: "text-delta", text: "answer: A" },
            { type: "finish", reason: "stop" },
          ],
        };
      };
      const { runtime, session, store } = await scriptedRuntime(
        Array<ScriptEntry>(10).fill(answer),
        cleanups,
      );
      const a = await session.send("A");
      await waitFor("A's model call", () => asked.includes("A"));
      const old = (await sessionsSupervisor(runtime))!;
      if (how === "killed") old.kill();
      else void old.stop(new Error("too many session crashes"));
      await waitFor("the root supervisor to restart the session supervisor", async () => {
        const now = await sessionsSupervisor(runtime);
        return now !== undefined && now !== old && now.status === "running";
      });
      expect(runtime.status).toBe("running");

      const b = await session.send("B");
      expect((await b.result).status).toBe("completed");
      if (how === "killed") {
        // Killed, its session left the handle open for the replay: it completes.
        expect(await a.result).toMatchObject({ status: "completed", text: "answer: A" });
      } else {
        // Stopped cleanly by its dying supervisor, the session told the caller that the
        // message stays queued and runs after the restart: so it does.
        await a.result.catch(() => undefined);
      }
      await waitFor("the durable queue to drain", async () =>
        (await store.queue.pending({})).length === 0 ? true : undefined,
      );
      expect(asked).toEqual(["A", "A", "B"]);
      hold.resolve();
    });
  }
});
