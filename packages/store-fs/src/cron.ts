/**
 * Cron jobs and their run logs:
 *
 * - `cron/jobs/<jobId>.json`: the job record, replaced atomically on every save; all jobs are
 *   read on open (there are tens or hundreds, not millions);
 * - `cron/runs/<jobId>.jsonl`: the run log, one run per line, appended with an fsync; once it
 *   would exceed `keep` runs it is rewritten atomically with the newest `keep`.
 */

import fs from "node:fs/promises";
import path from "node:path";
import type { CronJobRecord, CronRunPage, CronRunRecord, CronStore } from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import { appendDurably, type StoreContext } from "./context.js";
import { encodeFileName } from "./file-names.js";
import { readDirIfExists, readFileIfExists } from "./files.js";
import {
  describeValue,
  isPlainObject,
  optionsBag,
  pageLimit,
  requireFiniteNumber,
  requireKey,
  toJsonObjectText,
} from "./json.js";
import { badLine } from "./jsonl.js";
import { readJsonl } from "./log-table.js";
import { KeyedMutex } from "./mutex.js";

/** Directory of job files. */
export const JOBS_DIR = path.join("cron", "jobs");
/** Directory of run logs. */
export const RUNS_DIR = path.join("cron", "runs");
const DEFAULT_KEEP = 200;

interface Job {
  json: string;
  agentId: string;
}

interface StoredRun {
  run: CronRunRecord;
  /** Position in the file, to keep append order among equal `startedAt`. */
  order: number;
}

/** Newest first; among runs that started at the same ms, the later-appended first. */
function newestFirst(a: StoredRun, b: StoredRun): number {
  if (a.run.startedAt !== b.run.startedAt) return b.run.startedAt - a.run.startedAt;
  return b.order - a.order;
}

/** The cron store of one open store. */
export class Cron implements CronStore {
  readonly #context: StoreContext;
  readonly #jobs = new Map<string, Job>();
  readonly #mutex = new KeyedMutex();

  private constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Reads every job file. */
  static async load(context: StoreContext): Promise<Cron> {
    const cron = new Cron(context);
    const dir = path.join(context.dir, JOBS_DIR);
    for (const name of (await readDirIfExists(dir)).sort()) {
      if (!name.endsWith(".json")) continue;
      const file = path.join(dir, name);
      const content = await readFileIfExists(file);
      if (content === undefined) continue;
      let job: unknown;
      try {
        job = JSON.parse(content.toString("utf8"));
      } catch (error) {
        throw new StoreError(
          "STORE_CORRUPT",
          `${context.relative(file)} is not valid JSON: ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (!isPlainObject(job) || typeof job.id !== "string" || typeof job.agentId !== "string") {
        throw new StoreError("STORE_CORRUPT", `${context.relative(file)} is not a cron job record`);
      }
      if (`${encodeFileName(job.id)}.json` !== name) {
        throw new StoreError(
          "STORE_CORRUPT",
          `${context.relative(file)} holds job ${JSON.stringify(job.id)}, whose file is ${encodeFileName(job.id)}.json (was it renamed by hand?)`,
        );
      }
      cron.#jobs.set(job.id, { json: JSON.stringify(job), agentId: job.agentId });
    }
    return cron;
  }

  async getJob(id: string): Promise<CronJobRecord | undefined> {
    requireKey(id, "job id");
    return this.#mutex.run(`job:${id}`, async () => {
      const job = this.#jobs.get(id);
      return job === undefined ? undefined : (JSON.parse(job.json) as CronJobRecord);
    });
  }

  async putJob(job: CronJobRecord): Promise<void> {
    if (!isPlainObject(job)) {
      throw new InvalidArgumentError(`cron job must be a plain object, got ${describeValue(job)}`);
    }
    const id = requireKey(job.id, "job id");
    const agentId = requireKey(job.agentId, "job agentId");
    const json = toJsonObjectText(job, "cron job");
    await this.#mutex.run(`job:${id}`, async () => {
      await this.#context.files.writeFileAtomic(this.#jobFile(id), `${json}\n`);
      this.#jobs.set(id, { json, agentId });
    });
  }

  async deleteJob(id: string): Promise<boolean> {
    requireKey(id, "job id");
    // Both queues are joined at once, so the deletion is ordered with every job and run-log
    // operation by call: a run appended after `deleteJob` was called is not deleted with it.
    return this.#mutex.run([`job:${id}`, `runs:${id}`], async () => {
      // The runs go first: a crash in between leaves the job without history, never a
      // history without its job.
      await this.#context.files.removeFile(this.#runsFile(id));
      const existed = await this.#context.files.removeFile(this.#jobFile(id));
      this.#jobs.delete(id);
      return existed;
    });
  }

  async listJobs(agentId?: string): Promise<CronJobRecord[]> {
    if (agentId !== undefined) requireKey(agentId, "agentId");
    await this.#mutex.idle();
    const ids = [...this.#jobs.keys()].sort();
    const out: CronJobRecord[] = [];
    for (const id of ids) {
      const job = this.#jobs.get(id)!;
      if (agentId === undefined || job.agentId === agentId) out.push(JSON.parse(job.json));
    }
    return out;
  }

  async appendRun(run: CronRunRecord, options?: { keep?: number }): Promise<void> {
    if (!isPlainObject(run)) {
      throw new InvalidArgumentError(`cron run must be a plain object, got ${describeValue(run)}`);
    }
    const jobId = requireKey(run.jobId, "run jobId");
    requireFiniteNumber(run.startedAt, "run startedAt");
    const keep = pageLimit(
      optionsBag(options, "appendRun options").keep,
      "keep",
      DEFAULT_KEEP,
      Number.MAX_SAFE_INTEGER,
    );
    const json = toJsonObjectText(run, "cron run");
    await this.#mutex.run(`runs:${jobId}`, async () => {
      const file = this.#runsFile(jobId);
      const runs = await this.#readRuns(file);
      if (runs.length + 1 <= keep) {
        await this.#append(file, `${json}\n`, runs.length === 0);
        return;
      }
      runs.push({ run: JSON.parse(json) as CronRunRecord, order: runs.length });
      const kept = runs.sort(newestFirst).slice(0, keep).reverse();
      await this.#context.files.writeFileAtomic(
        file,
        kept.map((r) => `${JSON.stringify(r.run)}\n`).join(""),
      );
    });
  }

  async listRuns(jobId: string, options?: CronRunPage): Promise<CronRunRecord[]> {
    requireKey(jobId, "job id");
    const bag = optionsBag(options, "listRuns options");
    const limit = pageLimit(bag.limit, "limit", 100, 1000);
    const offset = bag.offset === undefined ? 0 : bag.offset;
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(
        `offset must be a non-negative integer, got ${describeValue(offset)}`,
      );
    }
    return this.#mutex.run(`runs:${jobId}`, async () => {
      const runs = await this.#readRuns(this.#runsFile(jobId));
      return runs
        .sort(newestFirst)
        .slice(offset, offset + limit)
        .map((r) => r.run);
    });
  }

  /** Waits for pending operations. */
  async close(): Promise<void> {
    await this.#mutex.idle();
  }

  #jobFile(id: string): string {
    return path.join(this.#context.dir, JOBS_DIR, `${encodeFileName(id)}.json`);
  }

  #runsFile(jobId: string): string {
    return path.join(this.#context.dir, RUNS_DIR, `${encodeFileName(jobId)}.jsonl`);
  }

  /** Reads a run log, cutting a torn last line. */
  async #readRuns(file: string): Promise<StoredRun[]> {
    const parsed = await readJsonl(this.#context, file);
    const name = this.#context.relative(file);
    return (parsed?.lines ?? []).map((line, order) => {
      const run = line.value;
      if (!isPlainObject(run) || typeof run.startedAt !== "number") {
        throw badLine(name, line, "a cron run record with startedAt");
      }
      return { run: run as CronRunRecord, order };
    });
  }

  async #append(file: string, text: string, create: boolean): Promise<void> {
    const dir = path.dirname(file);
    await this.#context.files.ensureDir(dir);
    const handle = await fs.open(file, "a", 0o644);
    try {
      // A new file's entry is made durable before anything is written to it, so that a
      // failure here rejects with nothing written.
      if (create) await this.#context.files.syncDir(dir);
      const { size } = await handle.stat();
      await appendDurably(handle, Buffer.from(text, "utf8"), size, this.#context, file);
    } finally {
      await handle.close();
    }
  }
}
