/**
 * Delivery of a finished run: `announce` through the host's callback, `webhook` as a JSON
 * POST. A delivery never fails the run: its outcome is recorded beside it.
 * @internal
 */
import { AbortedError, describe, TimeoutError } from "../errors.js";
import { startTimer } from "../runtime/timers.js";
import type { CronDeliver, CronDeliveryResult, CronJob, CronRun } from "./types.js";

/** What delivery needs from the service. */
export interface DeliveryOptions {
  deliver: CronDeliver | undefined;
  fetch: typeof fetch;
  webhookTimeoutMs: number;
  /** How long an `announce` waits for `deliver` to settle (`Infinity`: for ever). */
  announceTimeoutMs: number;
}

/** The body of a webhook delivery. */
export interface CronWebhookPayload {
  type: "cron.run";
  agentId: string;
  jobId: string;
  runId: string;
  trigger: CronRun["trigger"];
  status: "ok" | "error";
  scheduledAt: number;
  startedAt: number;
  finishedAt: number;
  output?: string;
  error?: string;
}

/** Delivers a finished run as the job says; resolves with the outcome, never rejects. */
export async function deliverRun(
  job: CronJob,
  payload: CronWebhookPayload,
  signal: AbortSignal,
  options: DeliveryOptions,
): Promise<CronDeliveryResult | undefined> {
  const delivery = job.delivery;
  if (delivery.kind === "none") return undefined;
  if (delivery.kind === "announce") {
    const text = payload.output?.trim() ?? "";
    if (payload.status !== "ok" || text === "") return { kind: "announce", status: "skipped" };
    if (options.deliver === undefined) {
      return {
        kind: "announce",
        status: "error",
        error: "no deliver callback is configured for announce deliveries",
      };
    }
    try {
      await announce(
        options.deliver,
        { channel: delivery.channel, target: delivery.target },
        payload.output ?? "",
        { job, runId: payload.runId },
        signal,
        options.announceTimeoutMs,
      );
      return { kind: "announce", status: "ok" };
    } catch (error) {
      return { kind: "announce", status: "error", error: describe(error) };
    }
  }
  const timeout = new AbortController();
  // Chained past setTimeout's 24.8-day limit, which would otherwise fire at once.
  const timer = startTimer(() => timeout.abort(), options.webhookTimeoutMs);
  try {
    const response = await options.fetch(delivery.url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "beamclaw-cron" },
      body: JSON.stringify(payload),
      signal: AbortSignal.any([signal, timeout.signal]),
      redirect: "error",
    });
    // Read the body so that the connection is released.
    await response.arrayBuffer().catch(() => undefined);
    if (response.ok) return { kind: "webhook", status: "ok", statusCode: response.status };
    return {
      kind: "webhook",
      status: "error",
      statusCode: response.status,
      error: `webhook answered HTTP ${response.status}`,
    };
  } catch (error) {
    const reason = timeout.signal.aborted
      ? `webhook did not answer within ${options.webhookTimeoutMs} ms`
      : describe(error);
    return { kind: "webhook", status: "error", error: reason };
  } finally {
    timer.cancel();
  }
}

/**
 * Calls `deliver` and waits for it to settle, for at most `timeoutMs`: past that it rejects
 * with a {@link TimeoutError} (and so does the callback's `signal`), as it rejects when the
 * run is cancelled (the service stops, the job is removed). A late settlement is ignored.
 */
function announce(
  deliver: CronDeliver,
  target: { channel: string; target: string },
  text: string,
  context: { job: CronJob; runId: string },
  runSignal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  const giveUp = new AbortController();
  const timer =
    timeoutMs === Infinity
      ? undefined
      : startTimer(
          () =>
            giveUp.abort(
              new TimeoutError(
                `the deliver callback did not settle within ${timeoutMs} ms`,
                timeoutMs,
              ),
            ),
          timeoutMs,
        );
  const onRunAbort = () =>
    giveUp.abort(
      new AbortedError("the run was cancelled while it was delivered", {
        cause: runSignal.reason,
      }),
    );
  runSignal.addEventListener("abort", onRunAbort, { once: true });
  return new Promise<void>((resolve, reject) => {
    giveUp.signal.addEventListener("abort", () => reject(giveUp.signal.reason), { once: true });
    if (runSignal.aborted) onRunAbort();
    // A callback that throws at once rejects this promise (the executor catches it).
    Promise.resolve(deliver(target, text, { ...context, signal: giveUp.signal })).then(
      () => resolve(),
      reject,
    );
  }).finally(() => {
    timer?.cancel();
    runSignal.removeEventListener("abort", onRunAbort);
  });
}
