/**
 * A caller's follower of a run on another node (`RunFollower`) hears of the owner's death two
 * ways: its own node's membership notice (`ownerDown`), and the `SESSION_CRASHED` the node
 * that takes the session over publishes as it replays the run. Whichever comes first tells
 * the caller once. Seen under load in the Redis cluster tests: the new owner's notice and the
 * start of its replay came before this node saw the old owner go down, and the late notice
 * told of the crash again, its `text-reset` withdrawing the replay's text already streamed.
 */
import { describe, expect, it } from "vitest";
import { RunFollower } from "../src/cluster/follower.js";
import type { ClusterPubSub, LocalSubscription } from "../src/cluster/types.js";
import type { PubSubHandler } from "../src/runtime/pubsub.js";
import { OWNER_WENT_MESSAGE } from "../src/sessions/session-actor.js";
import type { RunEvent } from "../src/sessions/types.js";

/** One node's view of the cluster topic: what is published reaches every subscriber at once. */
function topicBus(): ClusterPubSub {
  const handlers = new Map<string, Set<PubSubHandler<unknown>>>();
  const subscribe = <T>(topic: string, handler: PubSubHandler<T>) => {
    const set = handlers.get(topic) ?? new Set();
    handlers.set(topic, set);
    set.add(handler as PubSubHandler<unknown>);
    return () => set.delete(handler as PubSubHandler<unknown>);
  };
  return {
    publish(topic: string, message: unknown) {
      for (const handler of handlers.get(topic) ?? []) handler(message, topic);
      return handlers.get(topic)?.size ?? 0;
    },
    subscribe,
    async whenSubscribed() {},
    subscribeLocal<T>(topic: string, handler: PubSubHandler<T>): LocalSubscription {
      const off = subscribe(topic, handler);
      return { widen() {}, unsubscribe: () => void off() };
    },
  } as unknown as ClusterPubSub;
}

const KEY = "agent:main:main";
const RUN = "run-1";

function follow(bus: ClusterPubSub): RunFollower {
  const follower = new RunFollower(bus, KEY, "q-1", RUN, true, () => {});
  follower.target = "node-a";
  follower.accept(RUN);
  return follower;
}

const publish = (bus: ClusterPubSub, event: Record<string, unknown>) =>
  bus.publish(`session:${KEY}`, { runId: RUN, sessionKey: KEY, ...event });
const delta = (bus: ClusterPubSub, text: string) => publish(bus, { type: "text-delta", text });
const crashed = (bus: ClusterPubSub, message: string) =>
  publish(bus, { type: "error", error: { code: "SESSION_CRASHED", message } });
const reset = (bus: ClusterPubSub) => publish(bus, { type: "text-reset", reason: "runs again" });

/** The events the follower's log holds, and the text a caller streaming them ends with. */
function heard(follower: RunFollower): { events: RunEvent[]; text: string } {
  const events: RunEvent[] = [];
  for (let i = 0; follower.log.at(i) !== undefined; i++) events.push(follower.log.at(i)!);
  let text = "";
  for (const event of events) {
    if (event.type === "text-delta") text += event.text;
    if (event.type === "text-reset") text = "";
  }
  return { events, text };
}

const crashesOf = (events: RunEvent[]) =>
  events.filter((e) => e.type === "error" && e.error.code === "SESSION_CRASHED").length;

describe("a run follower told of its owner's death twice", () => {
  it("keeps the replay's text when the new owner's notice came first and the membership notice late", () => {
    const bus = topicBus();
    const follower = follow(bus);
    publish(bus, { type: "run-start", agentId: "main", at: 0, input: [] });
    delta(bus, "echo");
    // node-b takes the session over and replays the run, telling of node-a's going first.
    crashed(bus, OWNER_WENT_MESSAGE);
    reset(bus);
    publish(bus, { type: "run-start", agentId: "main", at: 1, input: [] });
    delta(bus, "replay");
    // Only now does this node see node-a go down.
    follower.ownerDown();
    delta(bus, ": hold on");
    const { events, text } = heard(follower);
    expect(crashesOf(events)).toBe(1);
    expect(events.filter((e) => e.type === "text-reset")).toHaveLength(1);
    expect(events.filter((e) => e.type === "run-start")).toHaveLength(1);
    expect(text).toBe("replay: hold on");
  });

  it("tells once when the membership notice comes first and the new owner's after", () => {
    const bus = topicBus();
    const follower = follow(bus);
    publish(bus, { type: "run-start", agentId: "main", at: 0, input: [] });
    delta(bus, "echo");
    follower.ownerDown();
    crashed(bus, OWNER_WENT_MESSAGE);
    reset(bus);
    delta(bus, "replay");
    const { events, text } = heard(follower);
    expect(crashesOf(events)).toBe(1);
    expect(text).toBe("replay");
  });

  it("still tells of the owner's death after a crash the owner itself recovered from", () => {
    const bus = topicBus();
    const follower = follow(bus);
    publish(bus, { type: "run-start", agentId: "main", at: 0, input: [] });
    delta(bus, "echo");
    // The session crashed on node-a and its run runs again there...
    crashed(bus, "the session crashed; the message will run again");
    reset(bus);
    delta(bus, "again");
    // ...then node-a itself goes: the replay streamed there is withdrawn too.
    follower.ownerDown();
    const { events, text } = heard(follower);
    expect(crashesOf(events)).toBe(2);
    expect(text).toBe("");
  });
});
