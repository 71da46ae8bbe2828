/**
 * A supervision tree you can watch heal itself.
 *
 *   app (Supervisor, one_for_one)
 *   ├── counter  (permanent, registered as "counter")
 *   └── flaky    (transient, registered as "flaky"; crashes on every 3rd job)
 *
 * A driver sends jobs to "flaky" through the registry. Every crash is contained: the caller
 * gets a typed NoProcessError, the supervisor restarts the worker, the registry name points
 * to the new process, and the counter keeps its state. After `--duration-ms` (default 5000)
 * or Ctrl-C, the tree stops in reverse order and the process exits with nothing left open.
 */
import {
  Actor,
  NoProcessError,
  Registry,
  Supervisor,
  subscribeTelemetry,
  TimeoutError,
} from "@beamclaw/core";

const args = process.argv.slice(2);
const durationMs = Number(args[args.indexOf("--duration-ms") + 1] || 5000);
const quiet = args.includes("--quiet");
const log = (line: string) => {
  if (!quiet) console.log(line);
};

class Counter extends Actor<"get", number, "inc"> {
  #n = 0;
  protected override handleCall(): number {
    return this.#n;
  }
  protected override handleCast(): void {
    this.#n++;
  }
}

class Flaky extends Actor<number, string> {
  protected override async handleCall(job: number): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (job % 3 === 0) throw new Error(`job ${job} hit a bug`);
    return `job ${job} done by pid ${this.pid}`;
  }
}

const names = new Registry();
const app = await new Supervisor({
  name: "app",
  strategy: "one_for_one",
  maxRestarts: 100,
  periodMs: 1_000,
  children: [
    { id: "counter", start: () => new Counter().start(), via: names.via("counter") },
    {
      id: "flaky",
      restart: "transient",
      start: () => new Flaky().start(),
      via: names.via("flaky"),
    },
  ],
}).start();

let restarts = 0;
const offRestart = subscribeTelemetry("beamclaw:supervisor.restart", (event) => {
  restarts++;
  log(`  restarted ${event.childId} in ${event.latencyMs.toFixed(3)} ms`);
});

let stopping = false;
const stop = () => {
  stopping = true;
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
const deadline = setTimeout(stop, durationMs);

let job = 1;
let ok = 0;
let crashed = 0;
while (!stopping) {
  const flaky = names.whereis<Flaky>("flaky");
  const counter = names.whereis<Counter>("counter");
  if (flaky === undefined || counter === undefined) {
    await new Promise((resolve) => setImmediate(resolve)); // between crash and restart
    continue;
  }
  try {
    log(await flaky.call(job, { timeoutMs: 1_000 }));
    counter.cast("inc");
    ok++;
  } catch (error) {
    if (NoProcessError.isInstance(error) || TimeoutError.isInstance(error)) {
      crashed++;
      log(`job ${job} failed: ${error.code} (${error.message})`);
    } else {
      throw error;
    }
  }
  job++;
  await new Promise((resolve) => setTimeout(resolve, 50));
}

clearTimeout(deadline);
process.off("SIGINT", stop);
process.off("SIGTERM", stop);
const counted = await names.whereis<Counter>("counter")!.call("get");
offRestart();
await app.stop();

console.log(
  `runtime-demo: ${ok} jobs done, ${crashed} crashed and were contained, ${restarts} restarts, counter=${counted}, app ${app.status}`,
);
if (counted !== ok || crashed === 0 || restarts < crashed) {
  console.error("runtime-demo: the supervision tree did not behave as expected");
  process.exitCode = 1;
}
