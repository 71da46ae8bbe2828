/**
 * The followers of a session's runs (subscribers of `session:<key>` and `events:global`, a
 * run's handle) add up the streamed text, as a chat client or a channel's live message does.
 * A run whose answer could not be saved runs again and streams its answer anew: what the
 * failed attempt streamed is withdrawn first (`text-reset`), so that the answer is shown
 * once, and the run starts once (one `run-start`).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RunEvent } from "../src/sessions/index.js";
import { Follower } from "./fixtures/followers.js";
import { echoSession } from "./fixtures/lost-replies.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const setup = () => echoSession(cleanups, ["first"]);

describe("followers of a run whose save failed and which ran again", () => {
  for (const how of ["failed", "lost"] as const) {
    it(`see its answer once (the save ${how === "failed" ? "failed" : "was saved, its reply lost"})`, async () => {
      const { store, source, runtime, session } = await setup();
      const onSession = new Follower();
      const global = new Follower();
      runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, onSession.on);
      runtime.pubsub.subscribe<RunEvent>("events:global", global.on);
      // The answer of "fragile" (the second model call) is streamed, then its save fails.
      source.onCall = (index) => {
        if (index !== 1) return;
        if (how === "failed") store.failNext = 1;
        else store.loseNext = 1;
      };
      const run = await session.send("fragile");
      const handle = new Follower();
      for await (const event of run) handle.on(event);
      expect(await run.result).toMatchObject({ status: "completed", text: "answer: fragile" });
      // The model answered twice: the failed attempt, and the one saved.
      expect(source.requests).toHaveLength(3);
      for (const follower of [onSession, global, handle]) {
        expect(follower).toMatchObject({
          text: "answer: fragile",
          starts: 1,
          ends: 1,
          saveFailures: 1,
        });
      }
    });
  }
});
