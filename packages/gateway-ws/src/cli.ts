#!/usr/bin/env node
/** The `beamclaw` bin. */

const signals = ["SIGINT", "SIGTERM"] as const;
let stopping = false;
const forceListeners: Array<() => void> = [];
let requestStop: (signal: string) => void = () => {};
const stopRequested = new Promise<string>((resolve) => {
  requestStop = resolve;
});
const onSignal = (signal: string) => {
  if (stopping) {
    // A second signal: stop waiting for the drain (or for a cancelled start to unwind).
    for (const listener of forceListeners) listener();
    process.stderr.write(`${signal} again: exiting without waiting\n`);
    process.exit(1);
  }
  stopping = true;
  requestStop(signal);
};
// `beamclaw gateway` owns SIGINT/SIGTERM from the first moment, before its modules load: a
// signal while it loads or starts stops what has started and exits as one after the start
// does. The other commands keep Node's default (a signal ends them at once).
const ownsSignals = process.argv[2] === "gateway";
if (ownsSignals) for (const signal of signals) process.on(signal, onSignal);

const { main } = await import("./cli/main.js");
const code = await main(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
  waitForStop: () => stopRequested,
  onForce: (listener) => forceListeners.push(listener),
});
process.exitCode = code;
if (ownsSignals) for (const signal of signals) process.off(signal, onSignal);
