/**
 * Cron jobs in one hash (`jobId -> JSON`; jobs are few) and one sorted set of runs per job,
 * scored by `startedAt` and trimmed to the newest `keep` in the same script that appends.
 */
import type { CronJobRecord, CronRunPage, CronRunRecord, CronStore } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import { CRON_APPEND_RUN, CRON_DELETE_JOB } from "./scripts.js";
import { optionsObject, pageLimit, requireId, requireInteger, requireNumber } from "./validate.js";

/** Runs kept per job when `appendRun` is not told otherwise. */
export const DEFAULT_RUNS_KEPT = 200;

/** A run-log member is `<16-digit counter>:<JSON>`. */
const RUN_MEMBER_HEADER = 17;

export class RedisCronStore implements CronStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async getJob(id: string): Promise<CronJobRecord | undefined> {
    const field = requireId(id, "cron job id");
    const key = this.#keys.cronJobs;
    const json = await this.#conn.send<string | null>("hget", [key, field]);
    return json === null ? undefined : decodeJsonObject<CronJobRecord>(json, key);
  }

  async putJob(job: CronJobRecord): Promise<void> {
    if (typeof job !== "object" || job === null) {
      throw new InvalidArgumentError("cron job must be an object");
    }
    const id = requireId(job.id, "cron job id");
    requireId(job.agentId, "cron job agentId");
    const json = encodeJsonObject(job, "cron job");
    const key = this.#keys.cronJobs;
    await this.#conn.send("hset", [key, id, json]);
  }

  async deleteJob(id: string): Promise<boolean> {
    const field = requireId(id, "cron job id");
    const n = await this.#conn.script<number>(
      CRON_DELETE_JOB,
      [this.#keys.cronJobs, this.#keys.cronRuns(field)],
      [field],
    );
    return n === 1;
  }

  async listJobs(agentId?: string): Promise<CronJobRecord[]> {
    const agent = agentId === undefined ? undefined : requireId(agentId, "agentId");
    const key = this.#keys.cronJobs;
    const all = await this.#conn.send<string[]>("hvals", [key]);
    const jobs = all.map((json) => decodeJsonObject<CronJobRecord>(json, key));
    return (agent === undefined ? jobs : jobs.filter((job) => job.agentId === agent)).sort(
      (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  }

  async appendRun(run: CronRunRecord, options?: { keep?: number }): Promise<void> {
    if (typeof run !== "object" || run === null) {
      throw new InvalidArgumentError("cron run must be an object");
    }
    const jobId = requireId(run.jobId, "cron run jobId");
    const startedAt = requireNumber(run.startedAt, "cron run startedAt");
    const { keep = DEFAULT_RUNS_KEPT } = optionsObject(options, "appendRun options");
    requireInteger(keep, "keep", 1);
    const json = encodeJsonObject(run, "cron run");
    await this.#conn.script(
      CRON_APPEND_RUN,
      [this.#keys.cronRuns(jobId), this.#keys.cronRunSeq],
      [String(startedAt), json, String(keep)],
    );
  }

  async listRuns(jobId: string, options?: CronRunPage): Promise<CronRunRecord[]> {
    const key = this.#keys.cronRuns(requireId(jobId, "cron job id"));
    const bag = optionsObject(options, "listRuns options");
    const limit = pageLimit(bag.limit, "listRuns limit");
    const offset = bag.offset === undefined ? 0 : requireInteger(bag.offset, "listRuns offset", 0);
    const members = await this.#conn.send<string[]>("zrevrange", [key, offset, offset + limit - 1]);
    return members.map((m) => decodeJsonObject<CronRunRecord>(m.slice(RUN_MEMBER_HEADER), key));
  }
}
