/**
 * The Store conformance suite: one set of vitest specifications that every Store adapter runs
 * unchanged against its real backend (`MemoryStore` in memory, `@beamclaw/store-fs` on real
 * files, `@beamclaw/store-redis` on a real Redis).
 *
 * What it proves: every sub-store's rules, isolation between namespaces, keys that look like
 * paths or separators, concurrent writers, large values, unicode, paging, TTL expiry, lock
 * expiry and fencing, bad input (an `InvalidArgumentError` and nothing written), closed stores
 * (`STORE_CLOSED`), and — where the adapter persists — that a store re-created over the same
 * namespace sees everything, replays pending inbound messages and still rejects their
 * duplicates. Crash tests that kill the backend mid-write need a backend-specific harness and
 * belong to each adapter's own tests.
 *
 * Which specifications are registered follows `capabilities` only; one that does not apply to
 * the adapter is not registered at all (nothing is reported as skipped). Cross-instance
 * specifications need `persistsAcrossInstances`; those with two stores open over one namespace
 * at once need `multiProcess`, and the lock ones among them `distributedLocks` as well.
 * `ttl: false` leaves nothing out: every store must hide expired data from reads; the flag only
 * says whether expired data is reclaimed without one.
 *
 * TTL, token and lease expiry use real time with short TTLs (100 ms), so a suite run takes a
 * few seconds of waiting in total.
 */
import { randomUUID } from "node:crypto";
import type * as Vitest from "vitest";
import {
  describe as describeError,
  FencedError,
  InvalidArgumentError,
  isBeamClawError,
  StoreError,
} from "../errors.js";
import type { JsonObject, JsonValue } from "../providers/types.js";
import { MAX_STORED_JSON_DEPTH } from "../store/limits.js";
import type {
  ApprovalRecord,
  CronRunRecord,
  DeviceTokenRecord,
  Lease,
  QueuedMessage,
  SessionRecord,
  Store,
} from "../store/types.js";

/**
 * vitest refuses to be imported outside a vitest worker, so it is loaded here rather than by a
 * static import: importing `@beamclaw/core/testing` anywhere stays harmless, and only calling
 * the suite outside vitest fails, with a message that says so.
 */
import { vitest } from "./vitest.js";

/** Used only while the suite runs, which `storeConformanceSuite` allows only when vitest loaded. */
const expect = (vitest instanceof Error ? undefined : vitest.expect) as Vitest.ExpectStatic;

/** How {@link storeConformanceSuite} reaches the adapter under test. */
export interface StoreConformanceOptions {
  /**
   * A new, unopened store over the given namespace (a directory, a key prefix). Two calls with
   * the same namespace reach the same data; different namespaces are isolated. The suite's
   * namespaces are made of `[a-z0-9-]`, unique per test.
   */
  create: (namespace: string) => Store | Promise<Store>;
  /** Called after each test with every namespace used, to remove backing data. Optional. */
  cleanup?: (namespaces: string[]) => void | Promise<void>;
  /**
   * Whether a closed and re-created store over the same namespace sees the data (false for
   * MemoryStore unless the same instance is reused). Default: `capabilities.durable === "process"`.
   */
  persistsAcrossInstances?: boolean;
}

/** TTL used by the expiry tests; the tests wait {@link EXPIRY_WAIT_MS} for it to pass. */
const SHORT_TTL_MS = 100;
const EXPIRY_WAIT_MS = SHORT_TTL_MS + 150;
/** A TTL that never runs out during a test. */
const LONG_TTL_MS = 10 * 60_000;
/** Tolerance when checking a timestamp the store computed from its own clock. */
const CLOCK_SLACK_MS = 1_000;

/**
 * Registers the Store conformance specifications (vitest `describe`/`it` blocks) for one
 * adapter. Call it at the top level of a test file.
 *
 * @example
 * ```ts
 * import { storeConformanceSuite } from "@beamclaw/core/testing";
 * import { FsStore } from "../src/index.js";
 *
 * const root = await mkdtemp(join(tmpdir(), "fs-store-"));
 * storeConformanceSuite("FsStore", {
 *   create: (namespace) => new FsStore({ dir: join(root, namespace) }),
 *   cleanup: async (namespaces) => {
 *     for (const ns of namespaces) await rm(join(root, ns), { recursive: true, force: true });
 *   },
 * });
 * ```
 */
export function storeConformanceSuite(name: string, options: StoreConformanceOptions): void {
  if (typeof options?.create !== "function") {
    throw new InvalidArgumentError("storeConformanceSuite: options.create must be a function");
  }
  if (vitest instanceof Error) {
    throw new Error(
      `storeConformanceSuite must be called from a vitest test file; vitest could not be loaded: ${vitest.message}`,
      { cause: vitest },
    );
  }
  const { afterAll, afterEach, describe, it } = vitest;
  describe(`${name} conforms to the Store contract v1`, async () => {
    const run = randomUUID().slice(0, 8);
    let counter = 0;
    const namespacesUsed: string[] = [];
    const storesMade: Store[] = [];

    const newNamespace = (): string => {
      const namespace = `bcsuite-${run}-t${++counter}`;
      namespacesUsed.push(namespace);
      return namespace;
    };
    const create = async (namespace: string): Promise<Store> => {
      const store = await options.create(namespace);
      storesMade.push(store);
      return store;
    };
    const open = async (namespace: string = newNamespace()): Promise<Store> => {
      const store = await create(namespace);
      await store.open();
      return store;
    };

    // Capabilities decide which specifications apply, so they are read when the tests are
    // registered, from a store that is never opened; one that does not apply is not registered.
    const probeNamespace = `bcsuite-${run}-probe`;
    const probe = await options.create(probeNamespace);
    const capabilities = probe.capabilities;
    const persistent = options.persistsAcrossInstances ?? capabilities.durable === "process";
    const sharedNamespace = capabilities.multiProcess;
    const sharedLocks = capabilities.multiProcess && capabilities.distributedLocks;
    /** `it` for a specification that applies to this adapter; otherwise it is not registered. */
    const itWhen =
      (applies: boolean) =>
      (title: string, fn: () => Promise<void>, timeout?: number): void => {
        if (applies) it(title, fn, timeout);
      };

    afterEach(async () => {
      const stores = storesMade.splice(0);
      const namespaces = namespacesUsed.splice(0);
      for (const store of stores) await store.close();
      await options.cleanup?.(namespaces);
    });

    afterAll(async () => {
      await probe.close();
      await options.cleanup?.([probeNamespace]);
    });

    // -------------------------------------------------------------- the store object

    describe("the store object", () => {
      it("declares specification v1, a kind and well-formed capabilities", () => {
        expect(probe.specificationVersion).toBe("v1");
        expect(typeof probe.kind).toBe("string");
        expect(probe.kind.length).toBeGreaterThan(0);
        expect(["memory", "process"]).toContain(capabilities.durable);
        for (const flag of ["multiProcess", "ttl", "distributedLocks"] as const) {
          expect(typeof capabilities[flag], flag).toBe("boolean");
        }
      });

      it("rejects every operation with STORE_CLOSED before open()", async () => {
        const store = await create(newNamespace());
        for (const [operation, call] of everyOperation(store)) {
          const error = await failure(call, operation);
          expect(codeOf(error), operation).toBe("STORE_CLOSED");
          expect(StoreError.isInstance(error), operation).toBe(true);
        }
      });

      it("rejects every operation with STORE_CLOSED after close(), and close() is idempotent", async () => {
        const store = await open();
        await store.sessions.put(session("s", 1));
        await store.close();
        await store.close();
        for (const [operation, call] of everyOperation(store)) {
          expect(codeOf(await failure(call, operation)), operation).toBe("STORE_CLOSED");
        }
      });
    });

    // -------------------------------------------------------------- sessions

    describe("sessions", () => {
      it("put then get returns the record as written, extra fields included", async () => {
        const store = await open();
        const record = session("agent:main:main", 20, {
          createdAt: 10,
          title: "hello",
          model: { provider: "anthropic", id: "claude" },
          tags: ["a", "b"],
          archived: false,
          parent: null,
        });
        await store.sessions.put(record);
        expect(await store.sessions.get("agent:main:main")).toEqual(record);
      });

      it("put replaces the whole record: fields left out of the new one are gone", async () => {
        const store = await open();
        await store.sessions.put(session("s", 1, { title: "old", extra: 1 }));
        await store.sessions.put(session("s", 2, { title: "new" }));
        expect(await store.sessions.get("s")).toEqual(session("s", 2, { title: "new" }));
        expect(await store.sessions.count()).toBe(1);
      });

      it("get of an unknown key is undefined, and delete returns whether the record existed", async () => {
        const store = await open();
        expect(await store.sessions.get("nobody")).toBeUndefined();
        await store.sessions.put(session("s", 1));
        expect(await store.sessions.delete("s")).toBe(true);
        expect(await store.sessions.delete("s")).toBe(false);
        expect(await store.sessions.get("s")).toBeUndefined();
        expect(await store.sessions.count()).toBe(0);
        expect((await store.sessions.list()).items).toEqual([]);
      });

      it("delete removes the record but not its transcript", async () => {
        const store = await open();
        await store.sessions.put(session("s", 1));
        await store.transcripts.append("s", [{ text: "kept" }]);
        await store.sessions.delete("s");
        expect(await store.transcripts.read("s")).toEqual([{ seq: 1, entry: { text: "kept" } }]);
      });

      it("list orders by updatedAt, newest first, and ties by key in code point order", async () => {
        const store = await open();
        for (const [key, updatedAt] of [
          ["b", 200],
          ["\u{1F600}", 100],
          ["a", 200],
          ["c", 300],
          ["\uFF5A", 100],
          ["z", 100],
          ["A", 200],
        ] as const) {
          await store.sessions.put(session(key, updatedAt));
        }
        const { items, cursor } = await store.sessions.list();
        // U+FF5A sorts before U+1F600 by code point (and by UTF-8 bytes), though not by UTF-16.
        expect(items.map((r) => r.key)).toEqual(["c", "A", "a", "b", "z", "\uFF5A", "\u{1F600}"]);
        expect(cursor).toBeUndefined();
      });

      it("an updated record moves to its new place in the order", async () => {
        const store = await open();
        await store.sessions.put(session("old", 1));
        await store.sessions.put(session("new", 2));
        await store.sessions.put(session("old", 3));
        expect((await store.sessions.list()).items.map((r) => r.key)).toEqual(["old", "new"]);
      });

      it("list pages through every record exactly once, with a cursor on every page but the last", async () => {
        const store = await open();
        const keys = Array.from({ length: 7 }, (_, i) => `s${i}`);
        // Two records share each updatedAt, so pages also split ties.
        await Promise.all(
          keys.map((key, i) => store.sessions.put(session(key, 100 - Math.floor(i / 2)))),
        );
        const pages = await allPages((cursor) => store.sessions.list({ limit: 2, cursor }));
        expect(pages.map((page) => page.items.length)).toEqual([2, 2, 2, 1]);
        expect(pages.flatMap((page) => page.items.map((r) => r.key))).toEqual(keys);
      });

      it("a page that ends exactly at the last record carries no cursor", async () => {
        const store = await open();
        for (const [i, key] of ["a", "b", "c", "d"].entries())
          await store.sessions.put(session(key, i));
        const first = await store.sessions.list({ limit: 2 });
        expect(first.cursor).toEqual(expect.any(String));
        const second = await store.sessions.list({ limit: 2, cursor: first.cursor });
        expect(second.items.map((r) => r.key)).toEqual(["b", "a"]);
        expect(second.cursor).toBeUndefined();
        expect((await store.sessions.list({ limit: 4 })).cursor).toBeUndefined();
      });

      it("records left unchanged while paging appear exactly once, even when others are deleted or added between pages", async () => {
        // The guarantee is keyset paging: a cursor marks a position in the order, not an
        // offset. Records put or deleted between pages may or may not be seen.
        const store = await open();
        const keys = ["s1", "s2", "s3", "s4", "s5", "s6"];
        for (const [i, key] of keys.entries())
          await store.sessions.put(session(key, 600 - i * 100));
        const first = await store.sessions.list({ limit: 2 });
        await store.sessions.delete("s1");
        const second = await store.sessions.list({ limit: 2, cursor: first.cursor });
        await store.sessions.put(session("s0", 1000));
        const third = await store.sessions.list({ limit: 2, cursor: second.cursor });
        const seen = [first, second, third].flatMap((page) => page.items.map((r) => r.key));
        expect(seen).toEqual(["s1", "s2", "s3", "s4", "s5", "s6"]);
        expect(third.cursor).toBeUndefined();
      });

      it("list filters by agentId and by updatedSince (inclusive), also across pages", async () => {
        const store = await open();
        for (let i = 0; i < 10; i++) {
          await store.sessions.put(
            session(`s${i}`, 100 + i, { agentId: i % 2 === 0 ? "even" : "odd" }),
          );
        }
        const even = await allPages((cursor) =>
          store.sessions.list({ agentId: "even", limit: 2, cursor }),
        );
        expect(even.flatMap((p) => p.items.map((r) => r.key))).toEqual([
          "s8",
          "s6",
          "s4",
          "s2",
          "s0",
        ]);
        const recent = await allPages((cursor) =>
          store.sessions.list({ updatedSince: 106, limit: 3, cursor }),
        );
        expect(recent.flatMap((p) => p.items.map((r) => r.key))).toEqual(["s9", "s8", "s7", "s6"]);
        const both = await store.sessions.list({ agentId: "odd", updatedSince: 105 });
        expect(both.items.map((r) => r.key)).toEqual(["s9", "s7", "s5"]);
        expect((await store.sessions.list({ agentId: "nobody" })).items).toEqual([]);
      });

      it("list returns 100 records per page by default", async () => {
        const store = await open();
        await Promise.all(
          Array.from({ length: 101 }, (_, i) => store.sessions.put(session(`s${i}`, i))),
        );
        const first = await store.sessions.list();
        expect(first.items).toHaveLength(100);
        const second = await store.sessions.list({ cursor: first.cursor });
        expect(second.items.map((r) => r.key)).toEqual(["s0"]);
        expect(second.cursor).toBeUndefined();
      });

      it("count counts every session, or one agent's", async () => {
        const store = await open();
        expect(await store.sessions.count()).toBe(0);
        await store.sessions.put(session("a1", 1, { agentId: "a" }));
        await store.sessions.put(session("a2", 1, { agentId: "a" }));
        await store.sessions.put(session("b1", 1, { agentId: "b" }));
        await store.sessions.put(session("a1", 2, { agentId: "a" }));
        expect(await store.sessions.count()).toBe(3);
        expect(await store.sessions.count("a")).toBe(2);
        expect(await store.sessions.count("b")).toBe(1);
        expect(await store.sessions.count("c")).toBe(0);
      });

      it("parallel puts to different sessions all land", async () => {
        const store = await open();
        const keys = Array.from({ length: 50 }, (_, i) => `agent:main:s${i}`);
        await Promise.all(keys.map((key, i) => store.sessions.put(session(key, i))));
        expect(await store.sessions.count()).toBe(50);
        const listed = await allPages((cursor) => store.sessions.list({ limit: 7, cursor }));
        expect(listed.flatMap((p) => p.items.map((r) => r.key))).toEqual([...keys].reverse());
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        const valid = session("s", 1);
        const badRecords: unknown[] = [
          undefined,
          null,
          "s",
          [valid],
          { ...valid, key: undefined },
          { ...valid, key: "" },
          { ...valid, key: 5 },
          { ...valid, agentId: undefined },
          { ...valid, agentId: "" },
          { ...valid, createdAt: "1" },
          { ...valid, updatedAt: undefined },
          { ...valid, updatedAt: Number.NaN },
          ...notJson.map((value) => ({ ...valid, extra: value })),
        ];
        for (const [i, bad] of badRecords.entries()) {
          await expectInvalid(() => store.sessions.put(bad as SessionRecord), `record #${i}`);
        }
        expect(await store.sessions.count()).toBe(0);
        expect(await store.sessions.get("s")).toBeUndefined();
        await store.sessions.put(valid);
        await expectInvalid(() => store.sessions.get(""));
        await expectInvalid(() => store.sessions.delete(""));
        for (const bad of [
          { limit: 0 },
          { limit: 1001 },
          { limit: 2.5 },
          { limit: "10" },
          { cursor: "not a cursor" },
          { agentId: "" },
          { updatedSince: Number.NaN },
        ]) {
          await expectInvalid(() => store.sessions.list(bad as never), JSON.stringify(bad));
        }
        await expectInvalid(() => store.sessions.count(""));
        expect(await store.sessions.get("s")).toEqual(valid);
      });
    });

    // -------------------------------------------------------------- transcripts

    describe("transcripts", () => {
      it("append numbers entries 1..n in append order and returns the last seq", async () => {
        const store = await open();
        expect(await store.transcripts.append("s", [{ n: 1 }])).toBe(1);
        expect(await store.transcripts.append("s", [{ n: 2 }, { n: 3 }, { n: 4 }])).toBe(4);
        expect(await store.transcripts.lastSeq("s")).toBe(4);
        expect(await store.transcripts.read("s")).toEqual(
          [1, 2, 3, 4].map((n) => ({ seq: n, entry: { n } })),
        );
      });

      it("an empty append writes nothing and returns the current last seq", async () => {
        const store = await open();
        expect(await store.transcripts.append("s", [])).toBe(0);
        await store.transcripts.append("s", [{ n: 1 }]);
        expect(await store.transcripts.append("s", [])).toBe(1);
        expect(await store.transcripts.read("s")).toHaveLength(1);
      });

      it("read goes oldest first by default, newest first with order desc, and honours afterSeq, beforeSeq and limit", async () => {
        const store = await open();
        await store.transcripts.append(
          "s",
          Array.from({ length: 10 }, (_, i) => ({ n: i + 1 })),
        );
        const seqs = async (options: Parameters<Store["transcripts"]["read"]>[1]) =>
          (await store.transcripts.read("s", options)).map((record) => record.seq);
        expect(await seqs({})).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(await seqs({ limit: 3 })).toEqual([1, 2, 3]);
        expect(await seqs({ order: "desc", limit: 3 })).toEqual([10, 9, 8]);
        expect(await seqs({ afterSeq: 7 })).toEqual([8, 9, 10]);
        expect(await seqs({ afterSeq: 3, limit: 2 })).toEqual([4, 5]);
        expect(await seqs({ afterSeq: 3, order: "desc", limit: 2 })).toEqual([10, 9]);
        expect(await seqs({ beforeSeq: 4 })).toEqual([1, 2, 3]);
        expect(await seqs({ beforeSeq: 6, order: "desc", limit: 2 })).toEqual([5, 4]);
        expect(await seqs({ afterSeq: 2, beforeSeq: 6 })).toEqual([3, 4, 5]);
        expect(await seqs({ afterSeq: 2, beforeSeq: 6, order: "desc" })).toEqual([5, 4, 3]);
        expect(await seqs({ afterSeq: 10 })).toEqual([]);
        expect(await seqs({ beforeSeq: 1 })).toEqual([]);
        expect(await seqs({ afterSeq: 5, beforeSeq: 5 })).toEqual([]);
        expect((await store.transcripts.read("s", { afterSeq: 8 }))[0]).toEqual({
          seq: 9,
          entry: { n: 9 },
        });
      });

      it("read returns at most 100 entries by default", async () => {
        const store = await open();
        await store.transcripts.append(
          "s",
          Array.from({ length: 150 }, (_, i) => ({ n: i + 1 })),
        );
        const asc = await store.transcripts.read("s");
        expect(asc.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
        const desc = await store.transcripts.read("s", { order: "desc" });
        expect(desc.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 150 - i));
      });

      it("an unknown transcript reads empty with lastSeq 0, and delete returns false", async () => {
        const store = await open();
        expect(await store.transcripts.read("nobody")).toEqual([]);
        expect(await store.transcripts.lastSeq("nobody")).toBe(0);
        expect(await store.transcripts.delete("nobody")).toBe(false);
      });

      it("delete removes the whole transcript, and the next append starts again at seq 1", async () => {
        const store = await open();
        await store.transcripts.append("s", [{ n: 1 }, { n: 2 }]);
        expect(await store.transcripts.delete("s")).toBe(true);
        expect(await store.transcripts.read("s")).toEqual([]);
        expect(await store.transcripts.lastSeq("s")).toBe(0);
        expect(await store.transcripts.delete("s")).toBe(false);
        expect(await store.transcripts.append("s", [{ n: 3 }])).toBe(1);
        expect(await store.transcripts.read("s")).toEqual([{ seq: 1, entry: { n: 3 } }]);
      });

      it("numbers each session's transcript on its own", async () => {
        const store = await open();
        await store.transcripts.append("a", [{ n: 1 }, { n: 2 }]);
        expect(await store.transcripts.append("b", [{ n: 1 }])).toBe(1);
        expect(await store.transcripts.lastSeq("a")).toBe(2);
        await store.transcripts.delete("a");
        expect(await store.transcripts.lastSeq("b")).toBe(1);
      });

      it("parallel appends to one transcript get distinct, consecutive seqs", async () => {
        const store = await open();
        const seqs = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.transcripts.append("s", [{ writer: i }])),
        );
        expect([...seqs].sort((a, b) => a - b)).toEqual(
          Array.from({ length: 50 }, (_, i) => i + 1),
        );
        const records = await store.transcripts.read("s", { limit: 1000 });
        for (const [writer, seq] of seqs.entries()) {
          expect(records[seq - 1]).toEqual({ seq, entry: { writer } });
        }
      });

      it("a multi-entry append is atomic: parallel batches never interleave", async () => {
        const store = await open();
        const lasts = await Promise.all(
          Array.from({ length: 20 }, (_, batch) =>
            store.transcripts.append(
              "s",
              [0, 1, 2].map((part) => ({ batch, part })),
            ),
          ),
        );
        expect(await store.transcripts.lastSeq("s")).toBe(60);
        const records = await store.transcripts.read("s", { limit: 1000 });
        expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
        for (const [batch, last] of lasts.entries()) {
          expect(records.slice(last - 3, last).map((r) => r.entry)).toEqual(
            [0, 1, 2].map((part) => ({ batch, part })),
          );
        }
      });

      it("refuses bad input with InvalidArgumentError and appends none of a batch with one bad entry", async () => {
        const store = await open();
        await store.transcripts.append("s", [{ n: 1 }]);
        const badBatches: unknown[] = [
          undefined,
          "entries",
          { 0: { n: 2 } },
          [{ n: 2 }, null],
          [{ n: 2 }, "text"],
          [{ n: 2 }, [1, 2]],
          ...notJson.map((value) => [{ n: 2 }, { n: 3, value }]),
        ];
        for (const [i, bad] of badBatches.entries()) {
          await expectInvalid(
            () => store.transcripts.append("s", bad as JsonObject[]),
            `batch #${i}`,
          );
        }
        await expectInvalid(() => store.transcripts.append("", [{ n: 2 }]));
        expect(await store.transcripts.lastSeq("s")).toBe(1);
        expect(await store.transcripts.read("s")).toEqual([{ seq: 1, entry: { n: 1 } }]);
        for (const bad of [
          { limit: 0 },
          { limit: 1001 },
          { limit: 1.5 },
          { afterSeq: -1 },
          { afterSeq: 0.5 },
          { beforeSeq: -1 },
          { order: "sideways" },
        ]) {
          await expectInvalid(() => store.transcripts.read("s", bad as never), JSON.stringify(bad));
        }
        await expectInvalid(() => store.transcripts.read(""));
        await expectInvalid(() => store.transcripts.lastSeq(""));
        await expectInvalid(() => store.transcripts.delete(""));
        expect(await store.transcripts.lastSeq("s")).toBe(1);
      });
    });

    // -------------------------------------------------------------- cron

    describe("cron jobs and run logs", () => {
      it("putJob stores or replaces a job, getJob reads it, listJobs lists all or one agent's", async () => {
        const store = await open();
        const daily = { id: "daily", agentId: "main", schedule: "0 9 * * *", enabled: true };
        await store.cron.putJob(daily);
        await store.cron.putJob({ id: "hourly", agentId: "ops", schedule: "0 * * * *" });
        await store.cron.putJob({ id: "weekly", agentId: "main", schedule: "0 9 * * 1" });
        expect(await store.cron.getJob("daily")).toEqual(daily);
        expect(await store.cron.getJob("nothing")).toBeUndefined();
        expect(ids(await store.cron.listJobs(), "id")).toEqual(["daily", "hourly", "weekly"]);
        expect(ids(await store.cron.listJobs("main"), "id")).toEqual(["daily", "weekly"]);
        expect(await store.cron.listJobs("nobody")).toEqual([]);
        await store.cron.putJob({ id: "daily", agentId: "ops" });
        expect(await store.cron.getJob("daily")).toEqual({ id: "daily", agentId: "ops" });
        expect(ids(await store.cron.listJobs("main"), "id")).toEqual(["weekly"]);
      });

      it("listRuns lists newest first by startedAt, whatever the append order, and honours limit", async () => {
        const store = await open();
        for (const startedAt of [3, 1, 5, 2, 4]) {
          await store.cron.appendRun({ jobId: "j", startedAt, status: "ok" });
        }
        await store.cron.appendRun({ jobId: "other", startedAt: 9 });
        expect((await store.cron.listRuns("j")).map((r) => r.startedAt)).toEqual([5, 4, 3, 2, 1]);
        expect((await store.cron.listRuns("j", { limit: 2 })).map((r) => r.startedAt)).toEqual([
          5, 4,
        ]);
        expect(await store.cron.listRuns("j")).toContainEqual({
          jobId: "j",
          startedAt: 3,
          status: "ok",
        });
        expect(await store.cron.listRuns("nothing")).toEqual([]);
      });

      it("listRuns pages a log longer than 1000 runs with offset, missing none", async () => {
        const store = await open();
        const total = 1234;
        for (let from = 0; from < total; from += 200) {
          await Promise.all(
            Array.from({ length: Math.min(200, total - from) }, (_, i) =>
              store.cron.appendRun({ jobId: "j", startedAt: from + i }, { keep: 5000 }),
            ),
          );
        }
        const read: number[] = [];
        for (let offset = 0; offset <= total; offset += 1000) {
          const page = await store.cron.listRuns("j", { limit: 1000, offset });
          read.push(...page.map((r) => r.startedAt));
          if (page.length < 1000) break;
        }
        expect(read).toEqual(Array.from({ length: total }, (_, i) => total - 1 - i));
        expect(
          (await store.cron.listRuns("j", { limit: 3, offset: 2 })).map((r) => r.startedAt),
        ).toEqual([total - 3, total - 4, total - 5]);
        expect(await store.cron.listRuns("j", { offset: total })).toEqual([]);
        expect(await store.cron.listRuns("j", { offset: Number.MAX_SAFE_INTEGER })).toEqual([]);
        expect((await store.cron.listRuns("j", { offset: 0 })).length).toBe(100);
        // A run added between two pages at the head pushes the last one read onto the next
        // page: listed again, nothing skipped.
        const first = await store.cron.listRuns("j", { limit: 2 });
        await store.cron.appendRun({ jobId: "j", startedAt: total }, { keep: 5000 });
        const second = await store.cron.listRuns("j", { limit: 2, offset: 2 });
        expect([...first, ...second].map((r) => r.startedAt)).toEqual([
          total - 1,
          total - 2,
          total - 2,
          total - 3,
        ]);
      });

      it("appendRun keeps only the `keep` newest runs", async () => {
        const store = await open();
        for (const startedAt of [1, 5, 2, 4, 3, 6]) {
          await store.cron.appendRun({ jobId: "j", startedAt }, { keep: 3 });
        }
        expect((await store.cron.listRuns("j")).map((r) => r.startedAt)).toEqual([6, 5, 4]);
        await store.cron.appendRun({ jobId: "j", startedAt: 0 }, { keep: 3 });
        expect((await store.cron.listRuns("j")).map((r) => r.startedAt)).toEqual([6, 5, 4]);
      });

      it("appendRun keeps 200 runs by default, also when runs are appended in parallel", async () => {
        const store = await open();
        await Promise.all(
          Array.from({ length: 205 }, (_, i) => store.cron.appendRun({ jobId: "j", startedAt: i })),
        );
        const runs = await store.cron.listRuns("j", { limit: 1000 });
        expect(runs.map((r) => r.startedAt)).toEqual(
          Array.from({ length: 200 }, (_, i) => 204 - i),
        );
      });

      it("keeps two runs with identical content as two runs", async () => {
        const store = await open();
        const run: CronRunRecord = { jobId: "j", startedAt: 7, status: "ok" };
        await store.cron.appendRun(run);
        await store.cron.appendRun({ ...run });
        expect(await store.cron.listRuns("j")).toEqual([run, run]);
      });

      it("deleteJob removes the job and its run log, and returns whether the job existed", async () => {
        const store = await open();
        await store.cron.putJob({ id: "j", agentId: "main" });
        await store.cron.appendRun({ jobId: "j", startedAt: 1 });
        expect(await store.cron.deleteJob("j")).toBe(true);
        expect(await store.cron.getJob("j")).toBeUndefined();
        expect(await store.cron.listRuns("j")).toEqual([]);
        expect(await store.cron.listJobs()).toEqual([]);
        expect(await store.cron.deleteJob("j")).toBe(false);
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        const badJobs: unknown[] = [
          undefined,
          [],
          { agentId: "main" },
          { id: "", agentId: "main" },
          { id: "j" },
          { id: "j", agentId: 1 },
          ...notJson.map((value) => ({ id: "j", agentId: "main", value })),
        ];
        for (const [i, bad] of badJobs.entries()) {
          await expectInvalid(() => store.cron.putJob(bad as never), `job #${i}`);
        }
        const badRuns: unknown[] = [
          null,
          { startedAt: 1 },
          { jobId: "", startedAt: 1 },
          { jobId: "j" },
          { jobId: "j", startedAt: "yesterday" },
          ...notJson.map((value) => ({ jobId: "j", startedAt: 1, value })),
        ];
        for (const [i, bad] of badRuns.entries()) {
          await expectInvalid(() => store.cron.appendRun(bad as never), `run #${i}`);
        }
        for (const keep of [0, -1, 1.5, "3"]) {
          await expectInvalid(
            () => store.cron.appendRun({ jobId: "j", startedAt: 1 }, { keep: keep as number }),
            `keep ${String(keep)}`,
          );
        }
        expect(await store.cron.listJobs()).toEqual([]);
        expect(await store.cron.listRuns("j")).toEqual([]);
        for (const limit of [0, 1001, 2.5]) {
          await expectInvalid(() => store.cron.listRuns("j", { limit }), `limit ${limit}`);
        }
        for (const offset of [-1, 1.5, "2", null, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
          await expectInvalid(
            () => store.cron.listRuns("j", { offset: offset as number }),
            `offset ${String(offset)}`,
          );
        }
        await expectInvalid(() => store.cron.getJob(""));
        await expectInvalid(() => store.cron.deleteJob(""));
        await expectInvalid(() => store.cron.listJobs(""));
        await expectInvalid(() => store.cron.listRuns(""));
      });
    });

    // -------------------------------------------------------------- devices and tokens

    describe("devices and tokens", () => {
      it("put, get, list and delete paired devices", async () => {
        const store = await open();
        const phone = { deviceId: "phone", name: "Phone", role: "node", scopes: ["read"] };
        await store.devices.put(phone);
        await store.devices.put({ deviceId: "laptop" });
        expect(await store.devices.get("phone")).toEqual(phone);
        expect(await store.devices.get("tablet")).toBeUndefined();
        expect(ids(await store.devices.list(), "deviceId")).toEqual(["laptop", "phone"]);
        await store.devices.put({ deviceId: "phone", name: "Renamed" });
        expect(await store.devices.get("phone")).toEqual({ deviceId: "phone", name: "Renamed" });
        expect(await store.devices.delete("phone")).toBe(true);
        expect(await store.devices.delete("phone")).toBe(false);
        expect(ids(await store.devices.list(), "deviceId")).toEqual(["laptop"]);
      });

      it("finds tokens by hash and lists them per device", async () => {
        const store = await open();
        const a1: DeviceTokenRecord = { tokenHash: "h-a1", deviceId: "a", role: "operator" };
        const a2: DeviceTokenRecord = {
          tokenHash: "h-a2",
          deviceId: "a",
          expiresAt: Date.now() + LONG_TTL_MS,
        };
        const b1: DeviceTokenRecord = { tokenHash: "h-b1", deviceId: "b" };
        for (const token of [a1, a2, b1]) await store.devices.putToken(token);
        expect(await store.devices.getToken("h-a1")).toEqual(a1);
        expect(await store.devices.getToken("h-a2")).toEqual(a2);
        expect(await store.devices.getToken("h-none")).toBeUndefined();
        expect(byKey(await store.devices.listTokens("a"), "tokenHash")).toEqual([a1, a2]);
        expect(await store.devices.listTokens("b")).toEqual([b1]);
        expect(await store.devices.listTokens("c")).toEqual([]);
        expect(await store.devices.deleteToken("h-a1")).toBe(true);
        expect(await store.devices.deleteToken("h-a1")).toBe(false);
        expect(await store.devices.listTokens("a")).toEqual([a2]);
      });

      it("does not return or list a token whose expiresAt has passed", async () => {
        const store = await open();
        await store.devices.putToken({
          tokenHash: "past",
          deviceId: "d",
          expiresAt: Date.now() - 1,
        });
        await store.devices.putToken({
          tokenHash: "soon",
          deviceId: "d",
          expiresAt: Date.now() + SHORT_TTL_MS,
        });
        await store.devices.putToken({
          tokenHash: "later",
          deviceId: "d",
          expiresAt: Date.now() + LONG_TTL_MS,
        });
        expect(await store.devices.getToken("past")).toBeUndefined();
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.devices.getToken("soon")).toBeUndefined();
        expect(await store.devices.getToken("later")).toEqual(
          expect.objectContaining({ tokenHash: "later" }),
        );
        expect(ids(await store.devices.listTokens("d"), "tokenHash")).toEqual(["later"]);
      });

      it("putting a token again under another device moves it there", async () => {
        const store = await open();
        await store.devices.putToken({ tokenHash: "h", deviceId: "a" });
        await store.devices.putToken({ tokenHash: "h", deviceId: "b" });
        expect(await store.devices.listTokens("a")).toEqual([]);
        expect(await store.devices.listTokens("b")).toEqual([{ tokenHash: "h", deviceId: "b" }]);
        await store.devices.delete("a");
        expect(await store.devices.getToken("h")).toEqual({ tokenHash: "h", deviceId: "b" });
      });

      it("deleting a device deletes every token of it, and only its tokens", async () => {
        const store = await open();
        await store.devices.put({ deviceId: "a" });
        await store.devices.put({ deviceId: "b" });
        await store.devices.putToken({ tokenHash: "a1", deviceId: "a" });
        await store.devices.putToken({
          tokenHash: "a2",
          deviceId: "a",
          expiresAt: Date.now() + LONG_TTL_MS,
        });
        await store.devices.putToken({ tokenHash: "b1", deviceId: "b" });
        // A token of a device that was never put is deleted with the device id too.
        await store.devices.putToken({ tokenHash: "c1", deviceId: "c" });
        expect(await store.devices.delete("a")).toBe(true);
        expect(await store.devices.getToken("a1")).toBeUndefined();
        expect(await store.devices.getToken("a2")).toBeUndefined();
        expect(await store.devices.listTokens("a")).toEqual([]);
        expect(await store.devices.getToken("b1")).toEqual({ tokenHash: "b1", deviceId: "b" });
        expect(await store.devices.delete("c")).toBe(false);
        expect(await store.devices.getToken("c1")).toBeUndefined();
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        const badDevices: unknown[] = [
          undefined,
          "phone",
          {},
          { deviceId: "" },
          { deviceId: 7 },
          ...notJson.map((value) => ({ deviceId: "d", value })),
        ];
        for (const [i, bad] of badDevices.entries()) {
          await expectInvalid(() => store.devices.put(bad as never), `device #${i}`);
        }
        const badTokens: unknown[] = [
          null,
          { deviceId: "d" },
          { tokenHash: "", deviceId: "d" },
          { tokenHash: "h" },
          { tokenHash: "h", deviceId: "" },
          { tokenHash: "h", deviceId: "d", expiresAt: "tomorrow" },
          { tokenHash: "h", deviceId: "d", expiresAt: Number.NaN },
          ...notJson.map((value) => ({ tokenHash: "h", deviceId: "d", value })),
        ];
        for (const [i, bad] of badTokens.entries()) {
          await expectInvalid(() => store.devices.putToken(bad as never), `token #${i}`);
        }
        expect(await store.devices.list()).toEqual([]);
        expect(await store.devices.getToken("h")).toBeUndefined();
        expect(await store.devices.listTokens("d")).toEqual([]);
        await expectInvalid(() => store.devices.get(""));
        await expectInvalid(() => store.devices.delete(""));
        await expectInvalid(() => store.devices.getToken(""));
        await expectInvalid(() => store.devices.deleteToken(""));
        await expectInvalid(() => store.devices.listTokens(""));
      });
    });

    // -------------------------------------------------------------- approvals

    describe("approvals", () => {
      it("put adds or replaces a record by pattern, and list returns the session's records", async () => {
        const store = await open();
        const git = approval("exec:git *", "allow", 1);
        const rm = approval("exec:rm -rf *", "deny", 2);
        await store.approvals.put("s", git);
        await store.approvals.put("s", rm);
        expect(byKey(await store.approvals.list("s"), "pattern")).toEqual([git, rm]);
        const gitDenied = approval("exec:git *", "deny", 3);
        await store.approvals.put("s", gitDenied);
        expect(byKey(await store.approvals.list("s"), "pattern")).toEqual([gitDenied, rm]);
        expect(await store.approvals.list("other")).toEqual([]);
      });

      it("clear removes one pattern or all of a session's, and returns how many it removed", async () => {
        const store = await open();
        for (const pattern of ["a", "b", "c"])
          await store.approvals.put("s", approval(pattern, "allow", 1));
        await store.approvals.put("t", approval("a", "allow", 1));
        expect(await store.approvals.clear("s", "b")).toBe(1);
        expect(await store.approvals.clear("s", "b")).toBe(0);
        expect(ids(await store.approvals.list("s"), "pattern")).toEqual(["a", "c"]);
        expect(await store.approvals.clear("s")).toBe(2);
        expect(await store.approvals.list("s")).toEqual([]);
        expect(await store.approvals.clear("s")).toBe(0);
        expect(await store.approvals.list("t")).toHaveLength(1);
      });

      it("keeps session key and pattern apart: ('a:b', 'c') and ('a', 'b:c') are different records", async () => {
        const store = await open();
        await store.approvals.put("a:b", approval("c", "allow", 1));
        await store.approvals.put("a", approval("b:c", "deny", 2));
        expect(await store.approvals.list("a:b")).toEqual([approval("c", "allow", 1)]);
        expect(await store.approvals.list("a")).toEqual([approval("b:c", "deny", 2)]);
        expect(await store.approvals.clear("a")).toBe(1);
        expect(await store.approvals.list("a:b")).toHaveLength(1);
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        const valid = approval("tool", "allow", 1);
        const badRecords: unknown[] = [
          undefined,
          "tool",
          { ...valid, pattern: "" },
          { ...valid, pattern: undefined },
          { ...valid, decision: "maybe" },
          { ...valid, decision: undefined },
          { ...valid, decidedAt: "now" },
          ...notJson.map((value) => ({ ...valid, value })),
        ];
        for (const [i, bad] of badRecords.entries()) {
          await expectInvalid(() => store.approvals.put("s", bad as never), `record #${i}`);
        }
        await expectInvalid(() => store.approvals.put("", valid));
        expect(await store.approvals.list("s")).toEqual([]);
        await expectInvalid(() => store.approvals.list(""));
        await expectInvalid(() => store.approvals.clear(""));
        await expectInvalid(() => store.approvals.clear("s", ""));
      });
    });

    // -------------------------------------------------------------- inbound queue

    describe("inbound queue", () => {
      it("enqueue stores the message with a store-assigned id, deliveries 0 and enqueuedAt now", async () => {
        const store = await open();
        const before = Date.now();
        const result = await store.queue.enqueue(inbound("k1", "s", { text: "hi" }));
        const after = Date.now();
        expect(result.duplicate).toBe(false);
        const { message } = result;
        expect(message).toEqual({
          id: expect.any(String),
          idempotencyKey: "k1",
          sessionKey: "s",
          payload: { text: "hi" },
          enqueuedAt: expect.any(Number),
          deliveries: 0,
        });
        expect(message.id.length).toBeGreaterThan(0);
        expect(message.enqueuedAt).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
        expect(message.enqueuedAt).toBeLessThanOrEqual(after + CLOCK_SLACK_MS);
        expect(await store.queue.pending()).toEqual([message]);
      });

      it("a repeated idempotency key while the message is pending is a duplicate that returns the original", async () => {
        const store = await open();
        const first = await store.queue.enqueue(inbound("k", "s", { text: "first" }));
        const again = await store.queue.enqueue(inbound("k", "other-session", { text: "second" }));
        expect(again).toEqual({ duplicate: true, message: first.message });
        expect(await store.queue.pending()).toEqual([first.message]);
      });

      it("an idempotency key acknowledged within the dedupe window is still a duplicate", async () => {
        const store = await open();
        expect(store.queue.dedupeWindowMs).toBeGreaterThan(60_000);
        const first = await store.queue.enqueue(inbound("k", "s", { text: "first" }));
        await store.queue.ack(first.message.id);
        const again = await store.queue.enqueue(inbound("k", "s", { text: "redelivered" }));
        expect(again.duplicate).toBe(true);
        expect(again.message).toEqual(
          expect.objectContaining({
            id: first.message.id,
            idempotencyKey: "k",
            payload: { text: "first" },
          }),
        );
        expect(await store.queue.pending()).toEqual([]);
      });

      it("discard removes a refused message and forgets its idempotency key, so a retry is new", async () => {
        const store = await open();
        const refused = await store.queue.enqueue(inbound("k", "s", { text: "refused" }));
        const other = await store.queue.enqueue(inbound("k2", "s", { text: "kept" }));
        await store.queue.discard(refused.message.id);
        await store.queue.discard(refused.message.id);
        expect(await store.queue.pending()).toEqual([other.message]);
        const retry = await store.queue.enqueue(inbound("k", "s", { text: "retry" }));
        expect(retry.duplicate).toBe(false);
        expect(retry.message.id).not.toBe(refused.message.id);
        expect(retry.message.payload).toEqual({ text: "retry" });
        await expectInvalid(() => store.queue.discard(""));
      });

      it("pending lists unacknowledged messages in enqueue order, optionally of one session, up to limit", async () => {
        const store = await open();
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) {
          ids.push(
            (await store.queue.enqueue(inbound(`k${i}`, i % 2 === 0 ? "even" : "odd", { i })))
              .message.id,
          );
        }
        expect(new Set(ids).size).toBe(6);
        await store.queue.ack(ids[2]!);
        const all = await store.queue.pending();
        expect(all.map((m) => m.payload.i)).toEqual([0, 1, 3, 4, 5]);
        expect((await store.queue.pending({ sessionKey: "even" })).map((m) => m.payload.i)).toEqual(
          [0, 4],
        );
        expect((await store.queue.pending({ limit: 2 })).map((m) => m.payload.i)).toEqual([0, 1]);
        expect(
          (await store.queue.pending({ sessionKey: "odd", limit: 2 })).map((m) => m.payload.i),
        ).toEqual([1, 3]);
        expect(await store.queue.pending({ sessionKey: "nobody" })).toEqual([]);
      });

      it("pending pages with `after` cover every pending message exactly once, in enqueue order", async () => {
        const store = await open();
        const ids: string[] = [];
        for (let i = 0; i < 7; i++) {
          ids.push(
            (await store.queue.enqueue(inbound(`k${i}`, i % 3 === 0 ? "a" : "b", { i }))).message
              .id,
          );
        }
        const pages = await pendingPages(store, { limit: 3 });
        expect(pages.map((page) => page.map((m) => m.payload.i))).toEqual([
          [0, 1, 2],
          [3, 4, 5],
          [6],
        ]);
        expect(pages.flat().map((m) => m.id)).toEqual(ids);
        // A page that ends exactly at the last message is followed by an empty one.
        const exact = await pendingPages(store, { limit: 7 });
        expect(exact.map((page) => page.length)).toEqual([7, 0]);
        expect(await store.queue.pending({ after: ids[6]! })).toEqual([]);
        // `after` is a position: with `sessionKey`, a message of another session marks it too.
        expect(
          (await store.queue.pending({ sessionKey: "a", after: ids[1]! })).map((m) => m.payload.i),
        ).toEqual([3, 6]);
        const ofB = await pendingPages(store, { sessionKey: "b", limit: 2 });
        expect(ofB.map((page) => page.map((m) => m.payload.i))).toEqual([[1, 2], [4, 5], []]);
        // `after` only reads: no delivery is counted.
        expect((await store.queue.pending({ limit: 1000 })).map((m) => m.deliveries)).toEqual(
          Array(7).fill(0),
        );
      });

      it("pending with `after`: a message acknowledged between pages is not listed, and the next page still follows its position", async () => {
        const store = await open();
        const ids: string[] = [];
        for (let i = 0; i < 6; i++)
          ids.push((await store.queue.enqueue(inbound(`k${i}`, "s", { i }))).message.id);
        const first = await store.queue.pending({ limit: 2 });
        expect(first.map((m) => m.payload.i)).toEqual([0, 1]);
        // The cursor's own message and one that was due on the next page are acknowledged.
        await store.queue.ack(ids[1]!);
        await store.queue.ack(ids[2]!);
        const second = await store.queue.pending({ limit: 2, after: first.at(-1)!.id });
        expect(second.map((m) => m.payload.i)).toEqual([3, 4]);
        // Discarded counts as gone too.
        await store.queue.discard(ids[5]!);
        expect(await store.queue.pending({ limit: 2, after: second.at(-1)!.id })).toEqual([]);
        // And the cursor of an acknowledged message still marks its place in a fresh listing.
        expect((await store.queue.pending({ after: ids[1]! })).map((m) => m.payload.i)).toEqual([
          3, 4,
        ]);
      });

      it("pending with `after`: a message enqueued between pages comes on a later page, after the older ones", async () => {
        const store = await open();
        for (let i = 0; i < 4; i++) await store.queue.enqueue(inbound(`k${i}`, "s", { i }));
        const first = await store.queue.pending({ limit: 2 });
        expect(first.map((m) => m.payload.i)).toEqual([0, 1]);
        const late = (await store.queue.enqueue(inbound("late", "other", { i: 4 }))).message;
        const rest = await pendingPages(store, { limit: 2 }, first.at(-1)!.id);
        expect(rest.map((page) => page.map((m) => m.payload.i))).toEqual([[2, 3], [4]]);
        expect(rest.flat().at(-1)).toEqual(late);
        // A duplicate enqueue between pages adds nothing.
        await store.queue.enqueue(inbound("k0", "s", { again: true }));
        expect((await pendingPages(store, { limit: 2 })).flat().map((m) => m.payload.i)).toEqual([
          0, 1, 2, 3, 4,
        ]);
      });

      it("pending refuses an `after` that is not a message id of this store with InvalidArgumentError", async () => {
        const store = await open();
        const { message } = await store.queue.enqueue(inbound("k", "s", { text: "kept" }));
        for (const bad of ["", "not a message id", 7, null, {}, [message.id]]) {
          await expectInvalid(
            () => store.queue.pending({ after: bad } as never),
            `pending after ${JSON.stringify(bad)}`,
          );
        }
        // Nothing was lost, and no delivery counted.
        expect(await store.queue.pending()).toEqual([message]);
      });

      it("replay hands out pending messages in enqueue order and counts a delivery on each one returned", async () => {
        const store = await open();
        for (let i = 0; i < 3; i++)
          await store.queue.enqueue(inbound(`k${i}`, i === 1 ? "b" : "a", { i }));
        const first = await store.queue.replay();
        expect(first.map((m) => [m.payload.i, m.deliveries])).toEqual([
          [0, 1],
          [1, 1],
          [2, 1],
        ]);
        const onlyA = await store.queue.replay({ sessionKey: "a", limit: 1 });
        expect(onlyA.map((m) => [m.payload.i, m.deliveries])).toEqual([[0, 2]]);
        // pending shows the counts without adding a delivery.
        expect((await store.queue.pending()).map((m) => m.deliveries)).toEqual([2, 1, 1]);
        expect((await store.queue.pending()).map((m) => m.deliveries)).toEqual([2, 1, 1]);
      });

      it("ack is idempotent and ignores unknown ids", async () => {
        const store = await open();
        const { message } = await store.queue.enqueue(inbound("k", "s", {}));
        await store.queue.ack(message.id);
        await store.queue.ack(message.id);
        await store.queue.ack("no-such-id");
        expect(await store.queue.pending()).toEqual([]);
      });

      it("ids are never reused, also after acknowledged messages are gone", async () => {
        const store = await open();
        const seen = new Set<string>();
        for (let i = 0; i < 5; i++) {
          const { message } = await store.queue.enqueue(inbound(`k${i}`, "s", { i }));
          expect(seen.has(message.id)).toBe(false);
          seen.add(message.id);
          await store.queue.ack(message.id);
        }
      });

      it("parallel enqueues of one idempotency key store exactly one message", async () => {
        const store = await open();
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.queue.enqueue(inbound("same", "s", { i }))),
        );
        const originals = results.filter((r) => !r.duplicate);
        expect(originals).toHaveLength(1);
        expect(new Set(results.map((r) => r.message.id))).toEqual(
          new Set([originals[0]!.message.id]),
        );
        expect(await store.queue.pending()).toHaveLength(1);
      });

      it("parallel enqueues of different keys keep every message", async () => {
        const store = await open();
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => store.queue.enqueue(inbound(`k${i}`, "s", { i }))),
        );
        expect(results.every((r) => !r.duplicate)).toBe(true);
        const pending = await store.queue.pending({ limit: 1000 });
        expect(pending).toHaveLength(30);
        expect(new Set(pending.map((m) => m.id)).size).toBe(30);
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        const valid = inbound("k", "s", { text: "hi" });
        const badMessages: unknown[] = [
          undefined,
          "message",
          { ...valid, idempotencyKey: undefined },
          { ...valid, idempotencyKey: "" },
          { ...valid, sessionKey: undefined },
          { ...valid, sessionKey: "" },
          { ...valid, payload: undefined },
          { ...valid, payload: null },
          { ...valid, payload: "text" },
          { ...valid, payload: [1] },
          ...notJson.map((value) => ({ ...valid, payload: { value } })),
        ];
        for (const [i, bad] of badMessages.entries()) {
          await expectInvalid(() => store.queue.enqueue(bad as never), `message #${i}`);
        }
        expect(await store.queue.pending()).toEqual([]);
        expect((await store.queue.enqueue(valid)).duplicate).toBe(false);
        for (const bad of [{ limit: 0 }, { limit: 1001 }, { limit: 1.5 }, { sessionKey: "" }]) {
          await expectInvalid(
            () => store.queue.pending(bad as never),
            `pending ${JSON.stringify(bad)}`,
          );
          await expectInvalid(
            () => store.queue.replay(bad as never),
            `replay ${JSON.stringify(bad)}`,
          );
        }
        await expectInvalid(() => store.queue.ack(""));
        expect((await store.queue.pending()).map((m) => m.deliveries)).toEqual([0]);
      });
    });

    // -------------------------------------------------------------- key/value

    describe("key/value", () => {
      it("round-trips every kind of JSON value, null included", async () => {
        const store = await open();
        const values: JsonValue[] = [
          null,
          true,
          false,
          0,
          -1.5,
          Number.MAX_SAFE_INTEGER,
          1e-7,
          "",
          "text",
          [],
          {},
          [1, "two", null, [3], { four: 4 }],
          {
            nested: { deeper: { list: [{ a: 1 }] } },
            empty: "",
            zero: 0,
            no: false,
            nothing: null,
          },
        ];
        for (const [i, value] of values.entries())
          expect(await store.kv.set(`k${i}`, value)).toBe(true);
        for (const [i, value] of values.entries())
          expect(await store.kv.get(`k${i}`)).toEqual(value);
        expect(await store.kv.get("k0")).toBeNull();
      });

      it("get of a missing key is undefined; set overwrites; delete returns whether the key existed", async () => {
        const store = await open();
        expect(await store.kv.get("k")).toBeUndefined();
        expect(await store.kv.set("k", 1)).toBe(true);
        expect(await store.kv.set("k", { v: 2 })).toBe(true);
        expect(await store.kv.get("k")).toEqual({ v: 2 });
        expect(await store.kv.delete("k")).toBe(true);
        expect(await store.kv.delete("k")).toBe(false);
        expect(await store.kv.get("k")).toBeUndefined();
      });

      it("keys lists the keys that start with a prefix, sorted by code point", async () => {
        const store = await open();
        for (const key of ["b", "\u{1F600}", "a:b", "a", "\u00e9", "ab", "\uFF5A", "a/b"]) {
          await store.kv.set(key, key);
        }
        expect(await store.kv.keys("")).toEqual([
          "a",
          "a/b",
          "a:b",
          "ab",
          "b",
          "\u00e9",
          "\uFF5A",
          "\u{1F600}",
        ]);
        expect(await store.kv.keys("a")).toEqual(["a", "a/b", "a:b", "ab"]);
        expect(await store.kv.keys("a:")).toEqual(["a:b"]);
        expect(await store.kv.keys("nothing")).toEqual([]);
      });

      it("treats the prefix literally: glob and regex characters match only themselves", async () => {
        const store = await open();
        for (const key of [
          "a*",
          "a*b",
          "ab",
          "a?",
          "ax",
          "a[b]",
          "a\\",
          "a.c",
          "abc",
          "a%",
          "a_",
        ]) {
          await store.kv.set(key, 1);
        }
        expect(await store.kv.keys("a*")).toEqual(["a*", "a*b"]);
        expect(await store.kv.keys("a?")).toEqual(["a?"]);
        expect(await store.kv.keys("a[")).toEqual(["a[b]"]);
        expect(await store.kv.keys("a\\")).toEqual(["a\\"]);
        expect(await store.kv.keys("a.")).toEqual(["a.c"]);
        expect(await store.kv.keys("a%")).toEqual(["a%"]);
        expect(await store.kv.keys("a_")).toEqual(["a_"]);
      });

      it("a prefix with a lone surrogate matches as a string prefix, never as U+FFFD", async () => {
        const store = await open();
        for (const key of ["a", "a\uFFFD", "a\uFFFDx", "a\u{1F600}", "a\u{1F680}", "b"]) {
          await store.kv.set(key, 1);
        }
        expect(await store.kv.keys("a\uD800")).toEqual([]);
        expect(await store.kv.keys("a\uDC00")).toEqual([]);
        // The high half of an emoji starts the keys holding that emoji, as with startsWith.
        expect(await store.kv.keys("a\uD83D")).toEqual(["a\u{1F600}", "a\u{1F680}"]);
        expect(await store.kv.keys("a\uFFFD")).toEqual(["a\uFFFD", "a\uFFFDx"]);
      });

      it("scan pages through the keys under a prefix in code point order, `limit` at a time", async () => {
        const store = await open();
        const under = ["p:", "p:a", "p:b", "p:\u00e9", "p:\uFF5A", "p:\u{1F600}", "p:z/1", "p:z:2"];
        for (const key of [...under, "p", "o:a", "q:a", "P:a"]) await store.kv.set(key, key);
        const pages = await allPages((cursor) => store.kv.scan("p:", { limit: 3, cursor }));
        expect(pages.map((page) => page.items.length)).toEqual([3, 3, 2]);
        expect(pages.flatMap((page) => page.items)).toEqual([...under].sort(byCodePoint));
        for (const page of pages.slice(0, -1)) expect(typeof page.cursor).toBe("string");
        // The default page holds up to 100 keys; an exact fit ends without a cursor.
        expect(await store.kv.scan("p:")).toEqual({ items: [...under].sort(byCodePoint) });
        expect(await store.kv.scan("p:", { limit: under.length })).toEqual({
          items: [...under].sort(byCodePoint),
        });
        expect(await store.kv.scan("nothing", { limit: 1000 })).toEqual({ items: [] });
        const everything = await allPages((cursor) => store.kv.scan("", { limit: 5, cursor }));
        expect(everything.flatMap((page) => page.items)).toEqual(await store.kv.keys(""));
      });

      it("scan treats the prefix literally: glob and regex characters match only themselves", async () => {
        const store = await open();
        const keys = ["a*", "a*b", "ab", "a?", "ax", "a[b]", "a\\", "a\\*", "a.c", "a%", "a_"];
        for (const key of keys) await store.kv.set(key, 1);
        const scanned = async (prefix: string) =>
          (await allPages((cursor) => store.kv.scan(prefix, { limit: 1, cursor }))).flatMap(
            (page) => page.items,
          );
        expect(await scanned("a*")).toEqual(["a*", "a*b"]);
        expect(await scanned("a?")).toEqual(["a?"]);
        expect(await scanned("a[")).toEqual(["a[b]"]);
        expect(await scanned("a[b")).toEqual(["a[b]"]);
        expect(await scanned("a\\")).toEqual(["a\\", "a\\*"]);
        expect(await scanned("a.")).toEqual(["a.c"]);
        expect(await scanned("a%")).toEqual(["a%"]);
        expect(await scanned("a_")).toEqual(["a_"]);
      });

      it("scan with a lone surrogate in the prefix matches as a string prefix, never as U+FFFD", async () => {
        const store = await open();
        for (const key of ["a", "a\uFFFD", "a\uFFFDx", "a\u{1F600}", "a\u{1F600}b", "a\u{1F680}"]) {
          await store.kv.set(key, 1);
        }
        const scanned = async (prefix: string) =>
          (await allPages((cursor) => store.kv.scan(prefix, { limit: 2, cursor }))).flatMap(
            (page) => page.items,
          );
        expect(await scanned("a\uD800")).toEqual([]);
        expect(await scanned("a\uDC00")).toEqual([]);
        expect(await scanned("a\uD83D")).toEqual(["a\u{1F600}", "a\u{1F600}b", "a\u{1F680}"]);
        expect(await scanned("a\uFFFD")).toEqual(["a\uFFFD", "a\uFFFDx"]);
      });

      it("scan returns every key present for the whole scan exactly once while keys come and go", async () => {
        const store = await open();
        const stable = Array.from({ length: 40 }, (_, i) => `k:${String(i * 10).padStart(4, "0")}`);
        for (const key of stable) await store.kv.set(key, 1);
        const transient = Array.from(
          { length: 40 },
          (_, i) => `k:${String(i * 10 + 5).padStart(4, "0")}`,
        );
        for (const key of transient) await store.kv.set(key, 2);
        const seen: string[] = [];
        let cursor: string | undefined;
        let round = 0;
        do {
          const page = await store.kv.scan("k:", { limit: 4, cursor });
          expect(page.items.length).toBeLessThanOrEqual(4);
          seen.push(...page.items);
          cursor = page.cursor;
          // Between pages: delete keys around the position, add keys before and after it.
          round++;
          await store.kv.delete(transient[(round * 7) % transient.length]!);
          await store.kv.set(`k:${String(round * 13).padStart(4, "0")}x`, 3);
          await store.kv.set(`k:0000-${round}`, 3);
          if (round > 200) throw new Error("scan did not end");
        } while (cursor !== undefined);
        for (const key of stable)
          expect(
            seen.filter((k) => k === key),
            key,
          ).toHaveLength(1);
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen).toEqual([...seen].sort(byCodePoint));
      });

      it("scan leaves out expired keys", async () => {
        const store = await open();
        for (let i = 0; i < 6; i++) {
          await store.kv.set(`t:${i}`, i, i % 2 === 0 ? { ttlMs: SHORT_TTL_MS } : undefined);
        }
        await sleep(EXPIRY_WAIT_MS);
        const pages = await allPages((cursor) => store.kv.scan("t:", { limit: 1, cursor }));
        expect(pages.flatMap((page) => page.items)).toEqual(["t:1", "t:3", "t:5"]);
      });

      it("scan refuses a bad prefix, limit or cursor with InvalidArgumentError", async () => {
        const store = await open();
        for (let i = 0; i < 5; i++) await store.kv.set(`a:${i}`, i);
        await store.kv.set("b:0", 0);
        const first = await store.kv.scan("a:", { limit: 2 });
        const cursor = first.cursor!;
        expect(typeof cursor).toBe("string");
        await expectInvalid(
          () => store.kv.scan(undefined as unknown as string),
          "prefix undefined",
        );
        await expectInvalid(() => store.kv.scan(7 as unknown as string), "prefix 7");
        await expectInvalid(() => store.kv.scan("a:", "x" as never), "options string");
        await expectInvalid(() => store.kv.scan("a:", null as never), "options null");
        for (const limit of [0, -1, 1001, 1.5, Number.NaN, "10", null]) {
          await expectInvalid(
            () => store.kv.scan("a:", { limit: limit as number }),
            `limit ${String(limit)}`,
          );
        }
        const edited = `${cursor.slice(0, -1)}${cursor.endsWith("A") ? "B" : "A"}`;
        for (const bad of [
          "",
          "garbage",
          `${cursor}!`,
          `${cursor}=`,
          edited,
          cursor.toUpperCase(),
          `x${cursor}`,
          7,
          {},
        ]) {
          await expectInvalid(
            () => store.kv.scan("a:", { cursor: bad as string }),
            `cursor ${JSON.stringify(bad)}`,
          );
        }
        // Another prefix's cursor is not a position in this listing.
        await expectInvalid(() => store.kv.scan("b:", { cursor }), "cursor of prefix a:");
        // Nothing was changed, and a good cursor still works.
        const rest = await allPages(
          (next) => store.kv.scan("a:", { limit: 2, cursor: next }),
          cursor,
        );
        expect([...first.items, ...rest.flatMap((page) => page.items)]).toEqual(
          await store.kv.keys("a:"),
        );
      });

      it("ifAbsent sets only when the key is absent, and says whether it did", async () => {
        const store = await open();
        expect(await store.kv.set("k", "first", { ifAbsent: true })).toBe(true);
        expect(await store.kv.set("k", "second", { ifAbsent: true })).toBe(false);
        expect(await store.kv.get("k")).toBe("first");
        expect(await store.kv.set("k", "third", { ifAbsent: false })).toBe(true);
        expect(await store.kv.get("k")).toBe("third");
        await store.kv.delete("k");
        expect(await store.kv.set("k", "fourth", { ifAbsent: true })).toBe(true);
      });

      it("delete with ifValue deletes only while the key holds that value (compare-and-delete)", async () => {
        const store = await open();
        await store.kv.set("claim", { owner: "a", at: 1 }, { ttlMs: LONG_TTL_MS });
        expect(await store.kv.delete("claim", { ifValue: { owner: "b", at: 1 } })).toBe(false);
        expect(await store.kv.delete("claim", { ifValue: "a" })).toBe(false);
        expect(await store.kv.get("claim")).toEqual({ owner: "a", at: 1 });
        expect(await store.kv.delete("claim", { ifValue: { owner: "a", at: 1 } })).toBe(true);
        expect(await store.kv.get("claim")).toBeUndefined();
        expect(await store.kv.keys("")).toEqual([]);
        expect(await store.kv.delete("claim", { ifValue: { owner: "a", at: 1 } })).toBe(false);
        // A value as read back compares equal; null is a value like any other.
        await store.kv.set("read", { b: [1, { c: "\u00e9\u{1F600}" }], a: -1.5, n: null });
        const read = await store.kv.get("read");
        expect(await store.kv.delete("read", { ifValue: read! })).toBe(true);
        await store.kv.set("null", null);
        expect(await store.kv.delete("null", { ifValue: 0 })).toBe(false);
        expect(await store.kv.delete("null", { ifValue: null })).toBe(true);
        expect(await store.kv.keys("")).toEqual([]);
        // ifValue undefined (or no options): an unconditional delete.
        await store.kv.set("plain", 1);
        expect(await store.kv.delete("plain", { ifValue: undefined })).toBe(true);
      });

      it("a compare-and-delete is atomic: a set racing it is never lost", async () => {
        const store = await open();
        for (let round = 0; round < 20; round++) {
          await store.kv.set("k", { round, v: "old" });
          const [deleted] = await Promise.all([
            store.kv.delete("k", { ifValue: { round, v: "old" } }),
            store.kv.set("k", { round, v: "new" }),
          ]);
          // Deleted before the set, or refused after it: either way the new value stays.
          expect(typeof deleted).toBe("boolean");
          expect(await store.kv.get("k")).toEqual({ round, v: "new" });
        }
        await store.kv.set("one", "v");
        const results = await Promise.all(
          Array.from({ length: 10 }, () => store.kv.delete("one", { ifValue: "v" })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it("set with ifValue writes only while the key holds that value (compare-and-set)", async () => {
        const store = await open();
        expect(await store.kv.set("claim", { owner: "b" }, { ifValue: null })).toBe(false);
        expect(await store.kv.get("claim")).toBeUndefined();
        expect(await store.kv.keys("")).toEqual([]);
        await store.kv.set("claim", { owner: "a", at: 1 });
        expect(await store.kv.set("claim", "x", { ifValue: { owner: "b", at: 1 } })).toBe(false);
        expect(await store.kv.set("claim", "x", { ifValue: { at: 1, owner: "a" } })).toBe(false);
        expect(await store.kv.set("claim", "x", { ifValue: "a" })).toBe(false);
        expect(await store.kv.get("claim")).toEqual({ owner: "a", at: 1 });
        const next = { owner: "b", at: 2 };
        expect(await store.kv.set("claim", next, { ifValue: { owner: "a", at: 1 } })).toBe(true);
        expect(await store.kv.get("claim")).toEqual(next);
        // The old value no longer matches: a second writer that read it is refused.
        expect(await store.kv.set("claim", "late", { ifValue: { owner: "a", at: 1 } })).toBe(false);
        expect(await store.kv.get("claim")).toEqual(next);
        // A value as read back compares equal; null is a value like any other.
        await store.kv.set("read", { b: [1, { c: "\u00e9\u{1F600}" }], a: -1.5, n: null });
        const read = await store.kv.get("read");
        expect(await store.kv.set("read", 2, { ifValue: read! })).toBe(true);
        expect(await store.kv.get("read")).toBe(2);
        await store.kv.set("null", null);
        expect(await store.kv.set("null", 1, { ifValue: 0 })).toBe(false);
        expect(await store.kv.set("null", 1, { ifValue: null })).toBe(true);
        expect(await store.kv.get("null")).toBe(1);
        // ifValue undefined (or ifAbsent false with it): the other options decide alone.
        expect(await store.kv.set("plain", 1, { ifValue: undefined })).toBe(true);
        expect(await store.kv.set("plain", 2, { ifValue: 1, ifAbsent: false })).toBe(true);
        expect(await store.kv.keys("")).toEqual(["claim", "null", "plain", "read"]);
      });

      it("set with ifValue sets the TTL asked (or none), and never matches an expired key", async () => {
        const store = await open();
        await store.kv.set("short", "v", { ttlMs: SHORT_TTL_MS });
        await store.kv.set("kept", "v", { ttlMs: SHORT_TTL_MS });
        expect(await store.kv.set("kept", "w", { ifValue: "v" })).toBe(true);
        await store.kv.set("long", "v");
        expect(await store.kv.set("long", "w", { ifValue: "v", ttlMs: SHORT_TTL_MS })).toBe(true);
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.kv.set("short", "w", { ifValue: "v" })).toBe(false);
        expect(await store.kv.get("short")).toBeUndefined();
        expect(await store.kv.get("long")).toBeUndefined();
        expect(await store.kv.get("kept")).toBe("w");
        expect(await store.kv.keys("")).toEqual(["kept"]);
      });

      it("a compare-and-set is atomic: of racing writers that read one value, exactly one wins and none is lost", async () => {
        const store = await open();
        for (let round = 0; round < 20; round++) {
          await store.kv.set("k", { round, v: "old" });
          const [swapped] = await Promise.all([
            store.kv.set("k", { round, v: "cas" }, { ifValue: { round, v: "old" } }),
            store.kv.set("k", { round, v: "new" }),
          ]);
          // Swapped before the plain set (which then wins), or refused after it: either way
          // the plain set's value stays.
          expect(typeof swapped).toBe("boolean");
          expect(await store.kv.get("k")).toEqual({ round, v: "new" });
        }
        await store.kv.set("one", 0);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.kv.set("one", i + 1, { ifValue: 0 })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.kv.get("one")).toBe(results.indexOf(true) + 1);
      });

      it("set with ifValue and ifAbsent together is an InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        await expectInvalid(() => store.kv.set("k", 1, { ifAbsent: true, ifValue: 1 }));
        await store.kv.set("kept", 1);
        await expectInvalid(() => store.kv.set("kept", 2, { ifAbsent: true, ifValue: 1 }));
        for (const bad of [
          { ifValue: Number.NaN },
          { ifValue: () => 1 },
          { ifValue: { nested: Number.POSITIVE_INFINITY } },
        ]) {
          await expectInvalid(
            () => store.kv.set("kept", 2, bad as never),
            `set ${String(JSON.stringify(bad))}`,
          );
        }
        expect(await store.kv.get("kept")).toBe(1);
        expect(await store.kv.keys("")).toEqual(["kept"]);
      });

      it("parallel ifAbsent sets of one key: exactly one wins", async () => {
        const store = await open();
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.kv.set("k", i, { ifAbsent: true })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.kv.get("k")).toBe(results.indexOf(true));
      });

      it("a key with ttlMs expires: get, keys and delete stop seeing it and ifAbsent can set it again", async () => {
        const store = await open();
        await store.kv.set("short", "gone soon", { ttlMs: SHORT_TTL_MS });
        await store.kv.set("short-absent", "gone soon", { ttlMs: SHORT_TTL_MS, ifAbsent: true });
        await store.kv.set("long", "stays", { ttlMs: LONG_TTL_MS });
        await store.kv.set("forever", "stays");
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.kv.get("short")).toBeUndefined();
        expect(await store.kv.keys("")).toEqual(["forever", "long"]);
        expect(await store.kv.delete("short-absent")).toBe(false);
        expect(await store.kv.delete("short", { ifValue: "gone soon" })).toBe(false);
        expect(await store.kv.set("short", "again", { ifAbsent: true })).toBe(true);
        expect(await store.kv.get("short")).toBe("again");
        expect(await store.kv.get("long")).toBe("stays");
        expect(await store.kv.set("long", "no", { ifAbsent: true })).toBe(false);
      });

      it("a plain set replaces an earlier TTL: the key no longer expires", async () => {
        const store = await open();
        await store.kv.set("k", 1, { ttlMs: SHORT_TTL_MS });
        await store.kv.set("k", 2);
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.kv.get("k")).toBe(2);
      });

      it("keys lists only key/value keys, never the store's other data", async () => {
        const store = await open();
        await writeOneOfEach(store);
        await store.locks.acquire("lock", { owner: "o", ttlMs: LONG_TTL_MS });
        expect(await store.kv.keys("")).toEqual(["kv-key"]);
      });

      it("refuses bad input with InvalidArgumentError and writes nothing", async () => {
        const store = await open();
        for (const [i, value] of [undefined, ...notJson].entries()) {
          await expectInvalid(() => store.kv.set("k", value as JsonValue), `value #${i}`);
        }
        await expectInvalid(() => store.kv.set("", 1));
        await expectInvalid(() => store.kv.set(7 as unknown as string, 1));
        for (const bad of [
          { ttlMs: 0 },
          { ttlMs: -5 },
          { ttlMs: Number.NaN },
          { ttlMs: "100" },
          { ifAbsent: "yes" },
          { fence: { lock: "", token: 1 } },
          { fence: { lock: "l", token: "1" } },
          { fence: "l" },
        ]) {
          await expectInvalid(() => store.kv.set("k", 1, bad as never), JSON.stringify(bad));
        }
        expect(await store.kv.keys("")).toEqual([]);
        expect(await store.kv.get("k")).toBeUndefined();
        await expectInvalid(() => store.kv.get(""));
        await expectInvalid(() => store.kv.delete(""));
        await store.kv.set("kept", 1);
        for (const bad of [
          "1",
          { ifValue: Number.NaN },
          { ifValue: () => 1 },
          { ifValue: { nested: Number.POSITIVE_INFINITY } },
        ]) {
          await expectInvalid(
            () => store.kv.delete("kept", bad as never),
            `delete ${String(JSON.stringify(bad))}`,
          );
        }
        expect(await store.kv.get("kept")).toBe(1);
        await store.kv.delete("kept");
        await expectInvalid(() => store.kv.keys(undefined as unknown as string));
      });

      it("names what a value threw while it was read, and keeps it as the cause", async () => {
        const store = await open();
        const thrown = new Error("getter failed: token expired");
        const value = {
          get secret(): string {
            throw thrown;
          },
        };
        const error = await failure(() => store.kv.set("k", value as never), "throwing getter");
        expect(codeOf(error)).toBe("INVALID_ARGUMENT");
        expect((error as Error).message).toContain("getter failed: token expired");
        expect((error as Error).cause).toBe(thrown);
        expect(await store.kv.get("k")).toBeUndefined();
      });
    });

    // -------------------------------------------------------------- locks and fencing

    describe("locks and fencing", () => {
      it("acquire gives a lease (owner, positive token, expiresAt = now + ttlMs) and holder returns it", async () => {
        const store = await open();
        const before = Date.now();
        const lease = await store.locks.acquire("job", { owner: "node-1", ttlMs: LONG_TTL_MS });
        const after = Date.now();
        expect(lease).toEqual({
          name: "job",
          owner: "node-1",
          token: expect.any(Number),
          expiresAt: expect.any(Number),
        });
        expect(Number.isInteger(lease!.token) && lease!.token > 0).toBe(true);
        expect(lease!.expiresAt).toBeGreaterThanOrEqual(before + LONG_TTL_MS - CLOCK_SLACK_MS);
        expect(lease!.expiresAt).toBeLessThanOrEqual(after + LONG_TTL_MS + CLOCK_SLACK_MS);
        expect(await store.locks.holder("job")).toEqual(lease);
        expect(await store.locks.holder("free")).toBeUndefined();
      });

      it("a held lock cannot be acquired by another owner", async () => {
        const store = await open();
        const lease = await store.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS });
        expect(
          await store.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }),
        ).toBeUndefined();
        expect(await store.locks.holder("job")).toEqual(lease);
      });

      it("renew extends a held lease and keeps its token", async () => {
        const store = await open();
        const lease = (await store.locks.acquire("job", { owner: "a", ttlMs: 60_000 }))!;
        const renewed = await store.locks.renew(lease, LONG_TTL_MS);
        expect(renewed).toEqual({ ...lease, expiresAt: expect.any(Number) });
        expect(renewed!.expiresAt).toBeGreaterThan(lease.expiresAt);
        expect(await store.locks.holder("job")).toEqual(renewed);
        // The renewed lease and the original one name the same holding.
        expect(await store.locks.renew(lease, LONG_TTL_MS)).toEqual(
          expect.objectContaining({ token: lease.token }),
        );
      });

      it("release frees the lock; releasing or renewing the same lease again fails", async () => {
        const store = await open();
        const lease = (await store.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS }))!;
        expect(await store.locks.release(lease)).toBe(true);
        expect(await store.locks.holder("job")).toBeUndefined();
        expect(await store.locks.release(lease)).toBe(false);
        expect(await store.locks.renew(lease, LONG_TTL_MS)).toBeUndefined();
        const next = await store.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS });
        expect(next?.owner).toBe("b");
      });

      it("fencing tokens strictly increase across every acquisition of one lock name", async () => {
        const store = await open();
        const tokens: number[] = [];
        for (let i = 0; i < 5; i++) {
          const lease = (await store.locks.acquire("job", { owner: `o${i}`, ttlMs: LONG_TTL_MS }))!;
          tokens.push(lease.token);
          await store.locks.release(lease);
        }
        for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
      });

      it("an expired lease lets another owner acquire with a higher token, and the stale holder's renew and release fail", async () => {
        const store = await open();
        const stale = (await store.locks.acquire("job", { owner: "a", ttlMs: SHORT_TTL_MS }))!;
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.locks.holder("job")).toBeUndefined();
        const fresh = (await store.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }))!;
        expect(fresh.token).toBeGreaterThan(stale.token);
        expect(await store.locks.renew(stale, LONG_TTL_MS)).toBeUndefined();
        expect(await store.locks.release(stale)).toBe(false);
        expect(await store.locks.holder("job")).toEqual(fresh);
      });

      it("an expired lease cannot be renewed, even when nobody took the lock since", async () => {
        const store = await open();
        const lease = (await store.locks.acquire("job", { owner: "a", ttlMs: SHORT_TTL_MS }))!;
        await sleep(EXPIRY_WAIT_MS);
        expect(await store.locks.renew(lease, LONG_TTL_MS)).toBeUndefined();
        expect(await store.locks.release(lease)).toBe(false);
      });

      it("renew and release with a wrong owner or token fail and leave the lease alone", async () => {
        const store = await open();
        const lease = (await store.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS }))!;
        for (const forged of [
          { ...lease, owner: "b" },
          { ...lease, token: lease.token + 1 },
          { ...lease, name: "other" },
        ]) {
          expect(await store.locks.renew(forged, LONG_TTL_MS)).toBeUndefined();
          expect(await store.locks.release(forged)).toBe(false);
        }
        expect(await store.locks.holder("job")).toEqual(lease);
      });

      it("parallel acquires by different owners: exactly one gets the lock", async () => {
        const store = await open();
        const leases = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.locks.acquire("job", { owner: `o${i}`, ttlMs: LONG_TTL_MS }),
          ),
        );
        const winners = leases.filter((lease) => lease !== undefined);
        expect(winners).toHaveLength(1);
        expect(await store.locks.holder("job")).toEqual(winners[0]);
      });

      it("locks of different names are independent", async () => {
        const store = await open();
        const a = await store.locks.acquire("a", { owner: "x", ttlMs: LONG_TTL_MS });
        const b = await store.locks.acquire("b", { owner: "y", ttlMs: LONG_TTL_MS });
        expect(a).toBeDefined();
        expect(b).toBeDefined();
        await store.locks.release(a!);
        expect(await store.locks.holder("b")).toEqual(b);
      });

      it("a fenced kv.set writes with the current token and rejects a stale one with FencedError, writing nothing", async () => {
        const store = await open();
        const first = (await store.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS }))!;
        expect(
          await store.kv.set("k", "from a", { fence: { lock: "job", token: first.token } }),
        ).toBe(true);
        await store.locks.release(first);
        const second = (await store.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }))!;
        const error = await failure(() =>
          store.kv.set("k", "stale write", { fence: { lock: "job", token: first.token } }),
        );
        expect(FencedError.isInstance(error)).toBe(true);
        expect(error).toEqual(
          expect.objectContaining({
            code: "FENCED",
            lock: "job",
            token: first.token,
            currentToken: second.token,
          }),
        );
        expect(await store.kv.get("k")).toBe("from a");
        expect(
          await store.kv.set("k", "from b", { fence: { lock: "job", token: second.token } }),
        ).toBe(true);
        expect(await store.kv.get("k")).toBe("from b");
      });

      it("a fenced kv.set against a lock never acquired is rejected with FencedError", async () => {
        const store = await open();
        const error = await failure(() =>
          store.kv.set("k", 1, { fence: { lock: "never", token: 1 } }),
        );
        expect(codeOf(error)).toBe("FENCED");
        expect(await store.kv.get("k")).toBeUndefined();
      });

      it("refuses bad input with InvalidArgumentError and takes no lock", async () => {
        const store = await open();
        for (const bad of [
          ["", { owner: "o", ttlMs: 1000 }],
          ["l", { owner: "", ttlMs: 1000 }],
          ["l", { ttlMs: 1000 }],
          ["l", { owner: "o", ttlMs: 0 }],
          ["l", { owner: "o", ttlMs: -1 }],
          ["l", { owner: "o", ttlMs: Number.NaN }],
          ["l", { owner: "o" }],
          ["l", undefined],
        ] as const) {
          await expectInvalid(
            () => store.locks.acquire(bad[0], bad[1] as never),
            JSON.stringify(bad),
          );
        }
        expect(await store.locks.holder("l")).toBeUndefined();
        const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: LONG_TTL_MS }))!;
        await expectInvalid(() => store.locks.renew(lease, 0));
        await expectInvalid(() => store.locks.renew(lease, -1));
        await expectInvalid(() => store.locks.renew(undefined as never, 1000));
        await expectInvalid(() => store.locks.release(null as never));
        await expectInvalid(() => store.locks.holder(""));
        expect(await store.locks.holder("l")).toEqual(lease);
      });
    });

    // -------------------------------------------------------------- fenced session writes

    // The optional `fenced` capability: not registered for a store without it (an empty
    // `describe` would fail).
    const describeFenced = typeof probe.fenced === "function" ? describe : () => undefined;
    describeFenced("fenced session writes", () => {
      it("with the current token each write acts like the unfenced one", async () => {
        const store = await open();
        const lease = (await store.locks.acquire("s", { owner: "o", ttlMs: LONG_TTL_MS }))!;
        const writes = store.fenced!({ lock: "s", token: lease.token });
        expect(writes.fence).toEqual({ lock: "s", token: lease.token });
        await writes.sessions.put(session("s", 1));
        expect(await store.sessions.get("s")).toEqual(session("s", 1));
        expect(await writes.transcripts.append("s", [{ n: 1 }, { n: 2 }])).toBe(2);
        expect(await writes.transcripts.append("s", [])).toBe(2);
        const a = (await store.queue.enqueue(inbound("a", "s", {}))).message;
        const b = (await store.queue.enqueue(inbound("b", "s", {}))).message;
        await writes.queue.ack(a.id);
        await writes.queue.discard(b.id);
        expect(await store.queue.pending()).toEqual([]);
        // Acknowledged is remembered, discarded is forgotten, as unfenced.
        expect((await store.queue.enqueue(inbound("a", "s", {}))).duplicate).toBe(true);
        expect((await store.queue.enqueue(inbound("b", "s", {}))).duplicate).toBe(false);
        expect(await writes.transcripts.delete("s")).toBe(true);
        expect(await writes.transcripts.delete("s")).toBe(false);
        expect(await writes.sessions.delete("s")).toBe(true);
        expect(await writes.sessions.delete("s")).toBe(false);
      });

      it("once another holder acquired the lock, every write of the earlier one is refused with FencedError, writing nothing", async () => {
        const store = await open();
        const first = (await store.locks.acquire("s", { owner: "a", ttlMs: LONG_TTL_MS }))!;
        const stale = store.fenced!({ lock: "s", token: first.token });
        await stale.sessions.put(session("s", 1, { by: "a" }));
        expect(await stale.transcripts.append("s", [{ by: "a" }])).toBe(1);
        const pending = (await store.queue.enqueue(inbound("m", "s", {}))).message;
        await store.locks.release(first);
        const second = (await store.locks.acquire("s", { owner: "b", ttlMs: LONG_TTL_MS }))!;
        const attempts: Array<[string, () => Promise<unknown>]> = [
          ["sessions.put", () => stale.sessions.put(session("s", 2, { by: "a" }))],
          ["sessions.delete", () => stale.sessions.delete("s")],
          ["transcripts.append", () => stale.transcripts.append("s", [{ by: "a, late" }])],
          ["transcripts.delete", () => stale.transcripts.delete("s")],
          ["queue.ack", () => stale.queue.ack(pending.id)],
          ["queue.discard", () => stale.queue.discard(pending.id)],
        ];
        for (const [what, attempt] of attempts) {
          const error = await failure(attempt);
          expect(FencedError.isInstance(error), what).toBe(true);
          expect(error, what).toEqual(
            expect.objectContaining({
              code: "FENCED",
              lock: "s",
              token: first.token,
              currentToken: second.token,
            }),
          );
        }
        expect(await store.sessions.get("s")).toEqual(session("s", 1, { by: "a" }));
        expect(await store.transcripts.read("s")).toEqual([{ seq: 1, entry: { by: "a" } }]);
        expect((await store.queue.pending()).map((m) => m.id)).toEqual([pending.id]);
        // The current holder's writes go through.
        const current = store.fenced!({ lock: "s", token: second.token });
        expect(await current.transcripts.append("s", [{ by: "b" }])).toBe(2);
        await current.queue.ack(pending.id);
        expect(await store.queue.pending()).toEqual([]);
      });

      it("a fence on a lock never acquired is refused, and a malformed fence is an InvalidArgumentError", async () => {
        const store = await open();
        const error = await failure(() =>
          store.fenced!({ lock: "never", token: 1 }).transcripts.append("s", [{ n: 1 }]),
        );
        expect(codeOf(error)).toBe("FENCED");
        expect(await store.transcripts.lastSeq("s")).toBe(0);
        for (const bad of [
          { lock: "", token: 1 },
          { lock: "s", token: 1.5 },
          { lock: "s" },
          null,
        ]) {
          let thrown: unknown;
          try {
            await store.fenced!(bad as never).sessions.put(session("s", 1));
          } catch (caught) {
            thrown = caught;
          }
          expect(codeOf(thrown), JSON.stringify(bad)).toBe("INVALID_ARGUMENT");
        }
        expect(await store.sessions.count()).toBe(0);
      });
    });

    // -------------------------------------------------------------- isolation and keys

    describe("isolation and awkward keys", () => {
      it("two namespaces share nothing, including one whose name extends the other's", async () => {
        // Suite namespaces end in a digit, so these two extensions of one are never another's.
        const base = newNamespace();
        const namespaces = [base, `${base}x`, `${base}-x`];
        namespacesUsed.push(`${base}x`, `${base}-x`);
        const [a, b, c] = await Promise.all(namespaces.map((ns) => open(ns)));
        await writeOneOfEach(a!);
        const lease = await a!.locks.acquire("lock", { owner: "a", ttlMs: LONG_TTL_MS });
        expect(lease).toBeDefined();
        for (const other of [b!, c!]) await expectEmpty(other);
        // The same keys written in the other namespaces leave the first one's data alone.
        await writeOneOfEach(b!, "other");
        expect(await b!.locks.acquire("lock", { owner: "b", ttlMs: LONG_TTL_MS })).toBeDefined();
        await expectOneOfEach(a!);
        expect(await a!.locks.holder("lock")).toEqual(lease);
        await expectEmpty(c!);
      });

      it("keys that look like paths, separators, encodings or each other never collide", async () => {
        const store = await open();
        for (const [i, key] of awkwardKeys.entries()) await store.kv.set(key, { i });
        for (const [i, key] of awkwardKeys.entries())
          expect(await store.kv.get(key), key.slice(0, 40)).toEqual({ i });
        expect(await store.kv.keys("")).toEqual([...awkwardKeys].sort(byCodePoint));

        for (const [i, key] of awkwardKeys.entries()) {
          await store.sessions.put(session(key, i));
          await store.transcripts.append(
            key,
            Array.from({ length: (i % 3) + 1 }, () => ({ key })),
          );
          await store.cron.putJob({ id: key, agentId: "main" });
          await store.cron.appendRun({ jobId: key, startedAt: i });
          await store.devices.putToken({ tokenHash: key, deviceId: `device-${i}` });
          await store.approvals.put(key, approval(key, "allow", i));
          await store.queue.enqueue(inbound(key, key, { i }));
          expect(
            await store.locks.acquire(key, { owner: key, ttlMs: LONG_TTL_MS }),
            key.slice(0, 40),
          ).toBeDefined();
        }
        expect(await store.sessions.count()).toBe(awkwardKeys.length);
        expect((await store.queue.pending({ limit: 1000 })).map((m) => m.payload.i)).toEqual(
          awkwardKeys.map((_, i) => i),
        );
        for (const [i, key] of awkwardKeys.entries()) {
          const label = key.slice(0, 40);
          expect((await store.sessions.get(key))?.updatedAt, label).toBe(i);
          expect(await store.transcripts.lastSeq(key), label).toBe((i % 3) + 1);
          expect((await store.transcripts.read(key))[0]?.entry, label).toEqual({ key });
          expect(await store.cron.getJob(key), label).toEqual({ id: key, agentId: "main" });
          expect(await store.cron.listRuns(key), label).toEqual([{ jobId: key, startedAt: i }]);
          expect((await store.devices.getToken(key))?.deviceId, label).toBe(`device-${i}`);
          expect(await store.approvals.list(key), label).toEqual([approval(key, "allow", i)]);
          expect(
            (await store.queue.pending({ sessionKey: key })).map((m) => m.payload.i),
            label,
          ).toEqual([i]);
          expect((await store.locks.holder(key))?.owner, label).toBe(key);
        }
      });

      it("keys that look like paths never reach a neighbouring namespace", async () => {
        const [inside, neighbour] = await Promise.all([open(), open()]);
        for (const key of awkwardKeys) {
          await inside!.kv.set(key, "inside");
          await inside!.sessions.put(session(key, 1));
        }
        expect(await neighbour!.kv.keys("")).toEqual([]);
        expect(await neighbour!.sessions.count()).toBe(0);
        for (const key of ["../x", "..", "a/b", "/"])
          expect(await neighbour!.kv.get(key)).toBeUndefined();
      });

      it("a key with a lone surrogate is either refused with InvalidArgumentError or kept apart from U+FFFD", async () => {
        // Such a key has no UTF-8 form; a backend that encodes it lossily would merge the three.
        const store = await open();
        const accepted: string[] = [];
        for (const key of ["x\uD800", "x\uDC00", "x\uFFFD"]) {
          try {
            await store.kv.set(key, key);
            accepted.push(key);
          } catch (error) {
            expect(codeOf(error)).toBe("INVALID_ARGUMENT");
          }
        }
        expect(accepted).toContain("x\uFFFD");
        for (const key of accepted) expect(await store.kv.get(key)).toBe(key);
        expect(new Set(await store.kv.keys("x"))).toEqual(new Set(accepted));
      });
    });

    // -------------------------------------------------------------- values

    describe("values", () => {
      it("a value of about 1 MB round-trips in sessions, transcripts and kv", async () => {
        const store = await open();
        const text = "0123456789abcdef\u00e9\u6f22\u{1F600}".repeat(50_000);
        const rows = Array.from({ length: 8_000 }, (_, i) => ({
          i,
          name: `row ${i}`,
          tags: ["x", "y"],
          ok: i % 2 === 0,
        }));
        const record = session("big", 1, { text, rows });
        await store.sessions.put(record);
        await store.transcripts.append("big", [{ text }, { rows }]);
        await store.kv.set("big", { text, rows });
        expect(await store.sessions.get("big")).toEqual(record);
        expect((await store.transcripts.read("big")).map((r) => r.entry)).toEqual([
          { text },
          { rows },
        ]);
        expect(await store.kv.get("big")).toEqual({ text, rows });
      });

      it("unicode round-trips unchanged in keys and values: emoji, ZWJ, RTL, combining marks, noncharacters, separators, controls", async () => {
        const store = await open();
        for (const [i, text] of unicodeSamples.entries()) {
          await store.kv.set(text, { text, [text]: i });
          await store.sessions.put(session(`s${i}`, i, { title: text }));
          await store.transcripts.append("unicode", [{ text }]);
          await store.queue.enqueue(inbound(`q${i}`, text, { text }));
        }
        for (const [i, text] of unicodeSamples.entries()) {
          expect(await store.kv.get(text), JSON.stringify(text)).toEqual({ text, [text]: i });
          expect((await store.sessions.get(`s${i}`))?.title, JSON.stringify(text)).toBe(text);
        }
        expect((await store.transcripts.read("unicode")).map((r) => r.entry.text)).toEqual(
          unicodeSamples,
        );
        expect((await store.queue.pending()).map((m) => [m.sessionKey, m.payload.text])).toEqual(
          unicodeSamples.map((text) => [text, text]),
        );
      });

      it("a lone surrogate inside a value round-trips", async () => {
        const store = await open();
        const value = { text: "high \uD800 low \uDC00 end", list: ["\uDBFF"] };
        await store.kv.set("k", value);
        await store.transcripts.append("s", [value]);
        expect(await store.kv.get("k")).toEqual(value);
        expect((await store.transcripts.read("s"))[0]?.entry).toEqual(value);
      });

      it("a value nested deeper than the call stack is refused with InvalidArgumentError, writing nothing", async () => {
        const store = await open();
        let deep: JsonValue = 1;
        for (let i = 0; i < 200_000; i++) deep = [deep];
        await expectInvalid(() => store.kv.set("k", deep), "kv.set");
        await expectInvalid(() => store.sessions.put(session("s", 1, { deep })), "sessions.put");
        await expectInvalid(
          () => store.transcripts.append("s", [{ n: 1 }, { deep }]),
          "transcripts.append",
        );
        await expectInvalid(
          () => store.queue.enqueue(inbound("i", "s", { deep })),
          "queue.enqueue",
        );
        expect(await store.kv.get("k")).toBeUndefined();
        expect(await store.sessions.get("s")).toBeUndefined();
        expect(await store.transcripts.lastSeq("s")).toBe(0);
        expect(await store.queue.pending()).toEqual([]);
      });

      it(`a value exactly MAX_STORED_JSON_DEPTH (${MAX_STORED_JSON_DEPTH}) levels deep is stored and read back equal by every write`, async () => {
        const namespace = newNamespace();
        const store = await open(namespace);
        // Top-level values of exactly the limit, ending in a scalar and in an empty container
        // (which counts as a level), and a record field that brings its record to the limit.
        const atLimit = nestedJson(MAX_STORED_JSON_DEPTH, "leaf");
        const atLimitEmpty = nestedJson(MAX_STORED_JSON_DEPTH - 1, {});
        const objectFirst = { a: nestedJson(MAX_STORED_JSON_DEPTH - 1, "leaf") };
        const field = nestedJson(MAX_STORED_JSON_DEPTH - 1, "leaf");
        const record = session("s", 1, { deepField: field });
        const entry = { deepField: field };
        await store.kv.set("k", atLimit);
        await store.kv.set("k-empty", atLimitEmpty);
        await store.kv.set("k-object", objectFirst);
        await store.sessions.put(record);
        expect(await store.transcripts.append("s", [{ n: 1 }, entry])).toBe(2);
        await store.cron.putJob({ id: "j", agentId: "main", deepField: field });
        await store.cron.appendRun({ jobId: "j", startedAt: 1, deepField: field });
        await store.devices.put({ deviceId: "d", deepField: field });
        await store.devices.putToken({ tokenHash: "h", deviceId: "d", deepField: field });
        await store.approvals.put("s", { ...approval("p", "allow", 1), deepField: field });
        await store.queue.enqueue(inbound("i", "s", { deepField: field }));

        const expectAll = async (reader: Store): Promise<void> => {
          expect(await reader.kv.get("k")).toEqual(atLimit);
          expect(await reader.kv.get("k-empty")).toEqual(atLimitEmpty);
          expect(await reader.kv.get("k-object")).toEqual(objectFirst);
          expect(await reader.sessions.get("s")).toEqual(record);
          expect((await reader.sessions.list()).items).toEqual([record]);
          expect(await reader.transcripts.read("s")).toEqual([
            { seq: 1, entry: { n: 1 } },
            { seq: 2, entry },
          ]);
          expect(await reader.cron.getJob("j")).toEqual({
            id: "j",
            agentId: "main",
            deepField: field,
          });
          expect(await reader.cron.listRuns("j")).toEqual([
            { jobId: "j", startedAt: 1, deepField: field },
          ]);
          expect(await reader.devices.get("d")).toEqual({ deviceId: "d", deepField: field });
          expect(await reader.devices.getToken("h")).toEqual({
            tokenHash: "h",
            deviceId: "d",
            deepField: field,
          });
          expect(await reader.approvals.list("s")).toEqual([
            { ...approval("p", "allow", 1), deepField: field },
          ]);
          expect((await reader.queue.pending()).map((m) => m.payload)).toEqual([
            { deepField: field },
          ]);
        };
        await expectAll(store);
        if (persistent) {
          // Read back from the backend by a new instance, not from what the first one holds.
          await store.close();
          await expectAll(await open(namespace));
        }
      });

      it(`a value one level deeper than MAX_STORED_JSON_DEPTH is refused by every write with InvalidArgumentError naming the path and the limit, writing nothing`, async () => {
        const store = await open();
        // What each write finds before: a refused write must leave it as it was.
        await store.kv.set("k", "old");
        await store.sessions.put(session("s", 1, { v: "old" }));
        await store.transcripts.append("s", [{ n: 1 }]);
        await store.cron.putJob({ id: "j", agentId: "main", v: "old" });
        await store.cron.appendRun({ jobId: "j", startedAt: 1 });
        await store.devices.put({ deviceId: "d", v: "old" });
        await store.devices.putToken({ tokenHash: "h", deviceId: "d", v: "old" });
        await store.approvals.put("s", approval("p", "allow", 1));
        await store.queue.enqueue(inbound("old", "s", { v: "old" }));
        const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: LONG_TTL_MS }))!;

        // Inside a record (level 1), a field of the limit's depth makes one level too many:
        // once with a scalar at the bottom, once with an empty object as the extra level.
        for (const deepField of [
          nestedJson(MAX_STORED_JSON_DEPTH, "leaf"),
          nestedJson(MAX_STORED_JSON_DEPTH - 1, {}),
        ]) {
          const writes: Array<[string, () => Promise<unknown>]> = [
            ["kv.set", () => store.kv.set("k", { deepField })],
            ["kv.set of a new key", () => store.kv.set("new", { deepField })],
            ["kv.set ifAbsent", () => store.kv.set("new", { deepField }, { ifAbsent: true })],
            [
              "kv.set fenced",
              () => store.kv.set("k", { deepField }, { fence: { lock: "l", token: lease.token } }),
            ],
            ["sessions.put", () => store.sessions.put(session("s", 2, { deepField }))],
            [
              "sessions.put of a new key",
              () => store.sessions.put(session("new", 2, { deepField })),
            ],
            ["transcripts.append", () => store.transcripts.append("s", [{ n: 2 }, { deepField }])],
            ["cron.putJob", () => store.cron.putJob({ id: "j", agentId: "main", deepField })],
            ["cron.appendRun", () => store.cron.appendRun({ jobId: "j", startedAt: 2, deepField })],
            ["devices.put", () => store.devices.put({ deviceId: "d", deepField })],
            [
              "devices.putToken",
              () => store.devices.putToken({ tokenHash: "h", deviceId: "d", deepField }),
            ],
            [
              "approvals.put",
              () => store.approvals.put("s", { ...approval("p", "deny", 2), deepField }),
            ],
            ["queue.enqueue", () => store.queue.enqueue(inbound("deep", "s", { deepField }))],
          ];
          for (const [what, write] of writes) await expectTooDeep(write, "deepField", what);
        }
        // A value at the top level one level too deep, with no field name in its path.
        await expectTooDeep(
          () => store.kv.set("k", nestedJson(MAX_STORED_JSON_DEPTH + 1, "leaf")),
          "",
          "kv.set of a top-level array",
        );

        expect(await store.kv.get("k")).toBe("old");
        expect(await store.kv.get("new")).toBeUndefined();
        expect(await store.kv.keys("")).toEqual(["k"]);
        expect(await store.sessions.get("s")).toEqual(session("s", 1, { v: "old" }));
        expect(await store.sessions.get("new")).toBeUndefined();
        expect(await store.sessions.count()).toBe(1);
        expect(await store.transcripts.read("s")).toEqual([{ seq: 1, entry: { n: 1 } }]);
        expect(await store.cron.getJob("j")).toEqual({ id: "j", agentId: "main", v: "old" });
        expect(await store.cron.listRuns("j")).toEqual([{ jobId: "j", startedAt: 1 }]);
        expect(await store.devices.get("d")).toEqual({ deviceId: "d", v: "old" });
        expect(await store.devices.getToken("h")).toEqual({
          tokenHash: "h",
          deviceId: "d",
          v: "old",
        });
        expect(await store.approvals.list("s")).toEqual([approval("p", "allow", 1)]);
        expect((await store.queue.pending()).map((m) => m.idempotencyKey)).toEqual(["old"]);
        // The refused message's idempotency key was not remembered, and the store carries on.
        expect((await store.queue.enqueue(inbound("deep", "s", { ok: true }))).duplicate).toBe(
          false,
        );
        expect(await store.transcripts.append("s", [{ n: 2 }])).toBe(2);
      });

      itWhen(typeof probe.fenced === "function")(
        "the fenced session writes store a value MAX_STORED_JSON_DEPTH deep and refuse one level deeper with InvalidArgumentError, writing nothing",
        async () => {
          const store = await open();
          const lease = (await store.locks.acquire("s", { owner: "o", ttlMs: LONG_TTL_MS }))!;
          const writes = store.fenced!({ lock: "s", token: lease.token });
          const field = nestedJson(MAX_STORED_JSON_DEPTH - 1, "leaf");
          const record = session("s", 1, { deepField: field });
          await writes.sessions.put(record);
          expect(await writes.transcripts.append("s", [{ deepField: field }])).toBe(1);
          expect(await store.sessions.get("s")).toEqual(record);
          expect(await store.transcripts.read("s")).toEqual([
            { seq: 1, entry: { deepField: field } },
          ]);

          const deepField = nestedJson(MAX_STORED_JSON_DEPTH, "leaf");
          await expectTooDeep(
            () => writes.sessions.put(session("s", 2, { deepField })),
            "deepField",
            "fenced sessions.put",
          );
          await expectTooDeep(
            () => writes.transcripts.append("s", [{ n: 2 }, { deepField }]),
            "deepField",
            "fenced transcripts.append",
          );
          expect(await store.sessions.get("s")).toEqual(record);
          expect(await store.transcripts.lastSeq("s")).toBe(1);
        },
      );

      it("object properties set to undefined are dropped, as JSON does", async () => {
        const store = await open();
        await store.sessions.put(session("s", 1, { note: undefined, kept: "yes" }));
        const read = await store.sessions.get("s");
        expect(read).toEqual(session("s", 1, { kept: "yes" }));
        expect(Object.keys(read!)).not.toContain("note");
      });

      it("reads return copies and writes take copies: mutating either never changes stored data", async () => {
        const store = await open();
        const record = session("s", 1, { nested: { n: 1 } });
        await store.sessions.put(record);
        (record.nested as { n: number }).n = 2;
        const read = (await store.sessions.get("s"))!;
        expect(read.nested).toEqual({ n: 1 });
        (read.nested as { n: number }).n = 3;
        expect((await store.sessions.get("s"))!.nested).toEqual({ n: 1 });
        ((await store.sessions.list()).items[0]!.nested as { n: number }).n = 4;
        expect((await store.sessions.get("s"))!.nested).toEqual({ n: 1 });

        const entry = { parts: ["a"] };
        await store.transcripts.append("s", [entry]);
        entry.parts.push("b");
        ((await store.transcripts.read("s"))[0]!.entry.parts as string[]).push("c");
        expect((await store.transcripts.read("s"))[0]!.entry).toEqual({ parts: ["a"] });

        const value = { list: [1] };
        await store.kv.set("k", value);
        value.list.push(2);
        (await store.kv.get<{ list: number[] }>("k"))!.list.push(3);
        expect(await store.kv.get("k")).toEqual({ list: [1] });

        const { message } = await store.queue.enqueue(inbound("q", "s", { n: 1 }));
        message.payload.n = 2;
        (await store.queue.pending())[0]!.payload.n = 3;
        (await store.queue.replay())[0]!.payload.n = 4;
        expect((await store.queue.pending())[0]!.payload).toEqual({ n: 1 });

        await store.cron.putJob({ id: "j", agentId: "main", tags: ["t"] });
        ((await store.cron.listJobs())[0]!.tags as string[]).push("x");
        await store.cron.appendRun({ jobId: "j", startedAt: 1, out: ["o"] });
        ((await store.cron.listRuns("j"))[0]!.out as string[]).push("x");
        expect(await store.cron.getJob("j")).toEqual({ id: "j", agentId: "main", tags: ["t"] });
        expect(await store.cron.listRuns("j")).toEqual([{ jobId: "j", startedAt: 1, out: ["o"] }]);

        await store.devices.put({ deviceId: "d", scopes: ["a"] });
        ((await store.devices.list())[0]!.scopes as string[]).push("x");
        await store.devices.putToken({ tokenHash: "h", deviceId: "d", scopes: ["a"] });
        ((await store.devices.listTokens("d"))[0]!.scopes as string[]).push("x");
        expect(await store.devices.get("d")).toEqual({ deviceId: "d", scopes: ["a"] });
        expect(await store.devices.getToken("h")).toEqual({
          tokenHash: "h",
          deviceId: "d",
          scopes: ["a"],
        });

        await store.approvals.put("s", approval("p", "allow", 1));
        (await store.approvals.list("s"))[0]!.decision = "deny";
        expect(await store.approvals.list("s")).toEqual([approval("p", "allow", 1)]);

        const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: LONG_TTL_MS }))!;
        const held = { ...lease };
        lease.expiresAt = 0;
        (await store.locks.holder("l"))!.owner = "intruder";
        expect(await store.locks.holder("l")).toEqual(held);
      });
    });

    // -------------------------------------------------------------- two instances at once

    if (sharedNamespace) {
      describe("two instances over one namespace", () => {
        it("see each other's writes", async () => {
          const namespace = newNamespace();
          const [a, b] = await Promise.all([open(namespace), open(namespace)]);
          await writeOneOfEach(a!);
          await expectOneOfEach(b!);
        });

        it("parallel appends through both get one gap-free sequence", async () => {
          const namespace = newNamespace();
          const [a, b] = await Promise.all([open(namespace), open(namespace)]);
          const lasts = await Promise.all(
            Array.from({ length: 30 }, (_, i) =>
              (i % 2 === 0 ? a! : b!).transcripts.append("s", [
                { i, part: 0 },
                { i, part: 1 },
              ]),
            ),
          );
          expect([...lasts].sort((x, y) => x - y)).toEqual(
            Array.from({ length: 30 }, (_, i) => (i + 1) * 2),
          );
          const records = await b!.transcripts.read("s", { limit: 1000 });
          for (const [i, last] of lasts.entries()) {
            expect(records.slice(last - 2, last).map((r) => r.entry)).toEqual([
              { i, part: 0 },
              { i, part: 1 },
            ]);
          }
        });

        it("one idempotency key enqueued through both is stored once", async () => {
          const namespace = newNamespace();
          const [a, b] = await Promise.all([open(namespace), open(namespace)]);
          const results = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              (i % 2 === 0 ? a! : b!).queue.enqueue(inbound("same", "s", { i })),
            ),
          );
          expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
          expect(new Set(results.map((r) => r.message.id)).size).toBe(1);
          expect(await a!.queue.pending()).toHaveLength(1);
        });

        it("ifAbsent through both: exactly one wins", async () => {
          const namespace = newNamespace();
          const [a, b] = await Promise.all([open(namespace), open(namespace)]);
          const results = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              (i % 2 === 0 ? a! : b!).kv.set("k", i, { ifAbsent: true }),
            ),
          );
          expect(results.filter(Boolean)).toHaveLength(1);
          expect(await b!.kv.get("k")).toBe(results.indexOf(true));
        });

        itWhen(sharedLocks)(
          "a lock held through one cannot be taken through the other, and tokens and fences span both",
          async () => {
            const namespace = newNamespace();
            const [a, b] = await Promise.all([open(namespace), open(namespace)]);
            const first = (await a!.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS }))!;
            expect(
              await b!.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }),
            ).toBeUndefined();
            expect(await b!.locks.holder("job")).toEqual(first);
            expect(await b!.locks.release(first)).toBe(true);
            const second = (await b!.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }))!;
            expect(second.token).toBeGreaterThan(first.token);
            const error = await failure(() =>
              a!.kv.set("k", 1, { fence: { lock: "job", token: first.token } }),
            );
            expect(codeOf(error)).toBe("FENCED");
            expect(await a!.kv.set("k", 2, { fence: { lock: "job", token: second.token } })).toBe(
              true,
            );
          },
        );

        itWhen(sharedLocks)(
          "parallel acquires through both: exactly one gets the lock",
          async () => {
            const namespace = newNamespace();
            const [a, b] = await Promise.all([open(namespace), open(namespace)]);
            const leases = await Promise.all(
              Array.from({ length: 20 }, (_, i) =>
                (i % 2 === 0 ? a! : b!).locks.acquire("job", {
                  owner: `o${i}`,
                  ttlMs: LONG_TTL_MS,
                }),
              ),
            );
            expect(leases.filter((lease) => lease !== undefined)).toHaveLength(1);
          },
        );
      });
    }

    // -------------------------------------------------------------- across instances

    if (persistent) {
      describe("a store re-created over the same namespace", () => {
        it("reads back everything written before close", async () => {
          const namespace = newNamespace();
          const first = await open(namespace);
          await writeOneOfEach(first);
          await first.close();
          const second = await open(namespace);
          await expectOneOfEach(second);
        });

        it("replays pending inbound messages in enqueue order, not acknowledged ones, and still knows both keys", async () => {
          const namespace = newNamespace();
          const first = await open(namespace);
          const m1 = (await first.queue.enqueue(inbound("k1", "a", { n: 1 }))).message;
          const m2 = (await first.queue.enqueue(inbound("k2", "b", { n: 2 }))).message;
          const m3 = (await first.queue.enqueue(inbound("k3", "a", { n: 3 }))).message;
          await first.queue.ack(m2.id);
          await first.queue.replay();
          await first.close();

          const second = await open(namespace);
          const replayed = await second.queue.replay();
          expect(replayed.map((m) => [m.id, m.payload.n, m.deliveries])).toEqual([
            [m1.id, 1, 2],
            [m3.id, 3, 2],
          ]);
          const pendingAgain = await second.queue.enqueue(inbound("k1", "a", { n: 1 }));
          expect(pendingAgain).toEqual({
            duplicate: true,
            message: expect.objectContaining({ id: m1.id }),
          });
          const ackedAgain = await second.queue.enqueue(inbound("k2", "b", { n: 2 }));
          expect(ackedAgain).toEqual({
            duplicate: true,
            message: expect.objectContaining({ id: m2.id }),
          });
          const m4 = (await second.queue.enqueue(inbound("k4", "a", { n: 4 }))).message;
          expect([m1.id, m2.id, m3.id]).not.toContain(m4.id);
          expect((await second.queue.pending()).map((m) => m.payload.n)).toEqual([1, 3, 4]);
          await second.queue.ack(m1.id);
          await second.queue.ack(m3.id);
          await second.close();

          const third = await open(namespace);
          expect((await third.queue.pending()).map((m) => m.id)).toEqual([m4.id]);
        });

        it("does not bring back a discarded message, nor remember its key", async () => {
          const namespace = newNamespace();
          const first = await open(namespace);
          const refused = (await first.queue.enqueue(inbound("k", "s", { n: 1 }))).message;
          await first.queue.discard(refused.id);
          await first.close();
          const second = await open(namespace);
          expect(await second.queue.pending()).toEqual([]);
          expect((await second.queue.enqueue(inbound("k", "s", { n: 2 }))).duplicate).toBe(false);
        });

        it("continues transcript numbering and fencing tokens", async () => {
          const namespace = newNamespace();
          const first = await open(namespace);
          await first.transcripts.append("s", [{ n: 1 }, { n: 2 }]);
          const lease = (await first.locks.acquire("job", { owner: "a", ttlMs: LONG_TTL_MS }))!;
          await first.locks.release(lease);
          await first.close();

          const second = await open(namespace);
          expect(await second.transcripts.append("s", [{ n: 3 }])).toBe(3);
          const next = (await second.locks.acquire("job", { owner: "b", ttlMs: LONG_TTL_MS }))!;
          expect(next.token).toBeGreaterThan(lease.token);
          expect(
            codeOf(
              await failure(() =>
                second.kv.set("k", 1, { fence: { lock: "job", token: lease.token } }),
              ),
            ),
          ).toBe("FENCED");
        });

        it("does not resurrect deleted data", async () => {
          const namespace = newNamespace();
          const first = await open(namespace);
          await writeOneOfEach(first);
          await first.sessions.delete("agent:main:main");
          await first.transcripts.delete("agent:main:main");
          await first.cron.deleteJob("job-1");
          await first.devices.delete("device-1");
          await first.approvals.clear("agent:main:main");
          await first.kv.delete("kv-key");
          await first.close();

          const second = await open(namespace);
          expect(await second.sessions.count()).toBe(0);
          expect(await second.transcripts.lastSeq("agent:main:main")).toBe(0);
          expect(await second.cron.listJobs()).toEqual([]);
          expect(await second.cron.listRuns("job-1")).toEqual([]);
          expect(await second.devices.list()).toEqual([]);
          expect(await second.devices.getToken("token-hash-1")).toBeUndefined();
          expect(await second.approvals.list("agent:main:main")).toEqual([]);
          expect(await second.kv.keys("")).toEqual([]);
        });
      });
    }
  });
}

// ------------------------------------------------------------------ fixtures

function session(key: string, updatedAt: number, more: JsonObject = {}): SessionRecord {
  return { agentId: "main", createdAt: 1, ...more, key, updatedAt } as SessionRecord;
}

function approval(pattern: string, decision: "allow" | "deny", decidedAt: number): ApprovalRecord {
  return { pattern, decision, decidedAt };
}

function inbound(idempotencyKey: string, sessionKey: string, payload: JsonObject) {
  return { idempotencyKey, sessionKey, payload };
}

/**
 * Values JSON cannot carry unchanged, or that throw while read: each must be refused with
 * `InvalidArgumentError` wherever a JSON value is taken (not passed on raw, nor reported as a
 * store failure).
 */
const notJson: unknown[] = (() => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const cyclicList: unknown[] = [1];
  cyclicList.push(cyclicList);
  const holes: unknown[] = [];
  holes[2] = 1;
  class Point {
    x = 1;
  }
  // Data that throws while it is read: a getter, and a proxy whose key listing fails.
  const throwingGetter = {
    get x(): number {
      throw new Error("getter failed");
    },
  };
  const throwingProxy = new Proxy(
    {},
    {
      ownKeys() {
        throw new Error("ownKeys trap failed");
      },
    },
  );
  return [
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    () => 1,
    10n,
    Symbol("s"),
    new Date(0),
    new Map([["a", 1]]),
    new Set([1]),
    new Point(),
    /regex/,
    [1, undefined],
    holes,
    cyclic,
    cyclicList,
    { deep: { deeper: [{ bad: Number.NaN }] } },
    throwingGetter,
    { nested: [throwingProxy] },
  ];
})();

/** Keys that a careless adapter would map onto the same file, hash field or prefix. */
const awkwardKeys: string[] = [
  "a",
  "b",
  "a:b",
  "a:b:c",
  "a::b",
  "a/b",
  "a\\b",
  "../x",
  "..\\x",
  "..",
  ".",
  "/",
  "/etc/passwd",
  "a/../b",
  "a%2Fb",
  "%2F",
  "%2e%2e",
  "a%3Ab",
  "a b",
  " ",
  "a\tb",
  "a\nb",
  "*",
  "a*",
  "a?",
  "[a]",
  "{a}",
  "a|b",
  "$",
  "#",
  "~",
  ".hidden",
  "CON",
  "nul",
  "Key",
  "key",
  "KEY",
  "\u00e9",
  "e\u0301",
  "\u{1F600}",
  "\uFF5A",
  "\u65E5\u672C",
  "\u0645\u0631\u062D\u0628\u0627",
  "x".repeat(1024),
  "\u00e9\u6f22\u{1F600}".repeat(256),
];

const unicodeSamples: string[] = [
  "h\u00e9llo w\u00f6rld",
  "e\u0301 vs \u00e9",
  "\u65E5\u672C\u8A9E\u30C6\u30AD\u30B9\u30C8",
  "\u0645\u0631\u062D\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
  "\u05E9\u05DC\u05D5\u05DD",
  "\u202Eevil\u202C",
  "\u{1F600}\u{1F469}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}\u{1F3F3}\uFE0F\u200D\u{1F308}",
  "\uFEFFbom",
  "\u2028\u2029 line separators",
  "\uFFFE\uFFFF noncharacters",
  "\u{10FFFF} last code point",
  "\u0001\u001F\u007F\u0085 controls",
  'tab\tnewline\nquote"backslash\\',
  "\u200B\u200C\u200D zero width",
];

// ------------------------------------------------------------------ helpers

/** Writes one record to every sub-store (the kv key is `kv-key`; no lock). */
async function writeOneOfEach(store: Store, tag = ""): Promise<void> {
  const extra: JsonObject = tag ? { other: tag } : {};
  await store.sessions.put(session("agent:main:main", 5, extra));
  await store.transcripts.append("agent:main:main", [{ n: 1, ...extra }, { n: 2 }]);
  await store.cron.putJob({ id: "job-1", agentId: "main", ...extra });
  await store.cron.appendRun({ jobId: "job-1", startedAt: 10, ...extra });
  await store.devices.put({ deviceId: "device-1", ...extra });
  await store.devices.putToken({ tokenHash: "token-hash-1", deviceId: "device-1", ...extra });
  await store.approvals.put("agent:main:main", { ...approval("exec:ls", "allow", 3), ...extra });
  await store.queue.enqueue(inbound("idem-1", "agent:main:main", { text: "hi", ...extra }));
  await store.kv.set("kv-key", { v: 1, ...extra });
}

/** Checks what {@link writeOneOfEach} wrote (without a tag). */
async function expectOneOfEach(store: Store): Promise<void> {
  expect(await store.sessions.get("agent:main:main")).toEqual(session("agent:main:main", 5));
  expect(await store.sessions.count()).toBe(1);
  expect(await store.transcripts.read("agent:main:main")).toEqual([
    { seq: 1, entry: { n: 1 } },
    { seq: 2, entry: { n: 2 } },
  ]);
  expect(await store.cron.listJobs()).toEqual([{ id: "job-1", agentId: "main" }]);
  expect(await store.cron.listRuns("job-1")).toEqual([{ jobId: "job-1", startedAt: 10 }]);
  expect(await store.devices.list()).toEqual([{ deviceId: "device-1" }]);
  expect(await store.devices.getToken("token-hash-1")).toEqual({
    tokenHash: "token-hash-1",
    deviceId: "device-1",
  });
  expect(await store.approvals.list("agent:main:main")).toEqual([approval("exec:ls", "allow", 3)]);
  const pending = await store.queue.pending();
  expect(pending.map((m) => [m.idempotencyKey, m.payload])).toEqual([["idem-1", { text: "hi" }]]);
  expect((await store.queue.enqueue(inbound("idem-1", "agent:main:main", {}))).duplicate).toBe(
    true,
  );
  expect(await store.kv.keys("")).toEqual(["kv-key"]);
  expect(await store.kv.get("kv-key")).toEqual({ v: 1 });
}

/** Checks that nothing {@link writeOneOfEach} writes is visible. */
async function expectEmpty(store: Store): Promise<void> {
  expect(await store.sessions.count()).toBe(0);
  expect((await store.sessions.list()).items).toEqual([]);
  expect(await store.transcripts.lastSeq("agent:main:main")).toBe(0);
  expect(await store.cron.listJobs()).toEqual([]);
  expect(await store.cron.listRuns("job-1")).toEqual([]);
  expect(await store.devices.list()).toEqual([]);
  expect(await store.devices.getToken("token-hash-1")).toBeUndefined();
  expect(await store.approvals.list("agent:main:main")).toEqual([]);
  expect(await store.queue.pending()).toEqual([]);
  expect(await store.kv.keys("")).toEqual([]);
  expect(await store.locks.holder("lock")).toBeUndefined();
}

/** Every operation of every sub-store, with valid arguments. */
function everyOperation(store: Store): Array<[string, () => Promise<unknown>]> {
  const lease: Lease = { name: "l", owner: "o", token: 1, expiresAt: Date.now() + LONG_TTL_MS };
  return [
    ["sessions.get", () => store.sessions.get("s")],
    ["sessions.put", () => store.sessions.put(session("s", 1))],
    ["sessions.delete", () => store.sessions.delete("s")],
    ["sessions.list", () => store.sessions.list()],
    ["sessions.count", () => store.sessions.count()],
    ["transcripts.append", () => store.transcripts.append("s", [{ n: 1 }])],
    ["transcripts.read", () => store.transcripts.read("s")],
    ["transcripts.lastSeq", () => store.transcripts.lastSeq("s")],
    ["transcripts.delete", () => store.transcripts.delete("s")],
    ["cron.getJob", () => store.cron.getJob("j")],
    ["cron.putJob", () => store.cron.putJob({ id: "j", agentId: "main" })],
    ["cron.deleteJob", () => store.cron.deleteJob("j")],
    ["cron.listJobs", () => store.cron.listJobs()],
    ["cron.appendRun", () => store.cron.appendRun({ jobId: "j", startedAt: 1 })],
    ["cron.listRuns", () => store.cron.listRuns("j")],
    ["devices.get", () => store.devices.get("d")],
    ["devices.put", () => store.devices.put({ deviceId: "d" })],
    ["devices.delete", () => store.devices.delete("d")],
    ["devices.list", () => store.devices.list()],
    ["devices.putToken", () => store.devices.putToken({ tokenHash: "h", deviceId: "d" })],
    ["devices.getToken", () => store.devices.getToken("h")],
    ["devices.deleteToken", () => store.devices.deleteToken("h")],
    ["devices.listTokens", () => store.devices.listTokens("d")],
    ["approvals.list", () => store.approvals.list("s")],
    ["approvals.put", () => store.approvals.put("s", approval("p", "allow", 1))],
    ["approvals.clear", () => store.approvals.clear("s")],
    ["queue.enqueue", () => store.queue.enqueue(inbound("k", "s", {}))],
    ["queue.ack", () => store.queue.ack("id")],
    ["queue.pending", () => store.queue.pending()],
    ["queue.replay", () => store.queue.replay()],
    ["kv.get", () => store.kv.get("k")],
    ["kv.set", () => store.kv.set("k", 1)],
    ["kv.delete", () => store.kv.delete("k")],
    ["kv.keys", () => store.kv.keys("")],
    ["kv.scan", () => store.kv.scan("")],
    ["locks.acquire", () => store.locks.acquire("l", { owner: "o", ttlMs: 1000 })],
    ["locks.renew", () => store.locks.renew(lease, 1000)],
    ["locks.release", () => store.locks.release(lease)],
    ["locks.holder", () => store.locks.holder("l")],
  ];
}

/**
 * The error `call` rejects with. Fails the test if it resolves, or if it throws synchronously:
 * every Store operation reports errors through its promise.
 */
async function failure(call: () => Promise<unknown>, what = "the call"): Promise<unknown> {
  let pending: Promise<unknown>;
  try {
    pending = call();
  } catch (error) {
    throw new Error(`${what} threw synchronously instead of rejecting: ${describeError(error)}`);
  }
  try {
    await pending;
  } catch (error) {
    return error;
  }
  throw new Error(`${what} resolved, but a rejection was expected`);
}

/**
 * `leaf` inside `depth` levels of arrays and objects, alternating from the outside in:
 * `[{ a: [{ a: ... leaf }] }]`. Its depth is `depth` plus the leaf's (0 for a scalar, 1 for
 * `{}` or `[]`). Built in a loop: no recursion, whatever the depth.
 */
function nestedJson(depth: number, leaf: JsonValue): JsonValue {
  let value = leaf;
  for (let level = depth; level >= 1; level--) {
    value = level % 2 === 1 ? [value] : { a: value };
  }
  return value;
}

/**
 * Checks that `call` rejects as a value deeper than {@link MAX_STORED_JSON_DEPTH} must: with
 * `InvalidArgumentError`, whose message names the limit and (`field`, when not empty) the
 * field the too-deep part is in.
 */
async function expectTooDeep(
  call: () => Promise<unknown>,
  field: string,
  what: string,
): Promise<void> {
  const error = await failure(call, what);
  expect(codeOf(error), `${what}: ${describeError(error)}`).toBe("INVALID_ARGUMENT");
  expect(InvalidArgumentError.isInstance(error), what).toBe(true);
  const message = (error as Error).message;
  expect(message, `${what}: the message names the limit`).toContain(String(MAX_STORED_JSON_DEPTH));
  if (field !== "") expect(message, `${what}: the message names the path`).toContain(field);
}

async function expectInvalid(call: () => Promise<unknown>, what = call.toString()): Promise<void> {
  const error = await failure(call, what);
  expect(codeOf(error), `${what}: ${describeError(error)}`).toBe("INVALID_ARGUMENT");
}

function codeOf(error: unknown): string {
  return isBeamClawError(error) ? error.code : `not a BeamClawError: ${describeError(error)}`;
}

async function allPages<T>(
  next: (cursor: string | undefined) => Promise<{ items: T[]; cursor?: string }>,
  from?: string,
): Promise<Array<{ items: T[]; cursor?: string }>> {
  const pages: Array<{ items: T[]; cursor?: string }> = [];
  let cursor: string | undefined = from;
  do {
    const page = await next(cursor);
    pages.push(page);
    cursor = page.cursor;
    if (pages.length > 1000) throw new Error("paging did not end after 1000 pages");
  } while (cursor !== undefined);
  return pages;
}

/**
 * Every page of `queue.pending`, each read with `after` set to the id of the previous page's
 * last message, until a page shorter than the limit (the last page, possibly empty).
 */
async function pendingPages(
  store: Store,
  options: { sessionKey?: string; limit: number },
  after?: string,
): Promise<QueuedMessage[][]> {
  const pages: QueuedMessage[][] = [];
  let cursor = after;
  for (;;) {
    const page = await store.queue.pending({
      ...options,
      ...(cursor === undefined ? {} : { after: cursor }),
    });
    pages.push(page);
    if (page.length < options.limit) return pages;
    cursor = page.at(-1)!.id;
    if (pages.length > 1000) throw new Error("paging did not end after 1000 pages");
  }
}

/** The values of `field`, sorted: for listings whose order the contract leaves open. */
function ids<T extends Record<string, unknown>>(items: T[], field: keyof T & string): string[] {
  return items.map((item) => String(item[field])).sort(byCodePoint);
}

/** `items` sorted by `field`: for listings whose order the contract leaves open. */
function byKey<T extends Record<string, unknown>>(items: T[], field: keyof T & string): T[] {
  return [...items].sort((a, b) => byCodePoint(String(a[field]), String(b[field])));
}

/** Code point order, written independently of any adapter's comparator. */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
