#!/usr/bin/env node
/** The `beamclaw` bin. */
import { main } from "./cli/main.js";

const signals = ["SIGINT", "SIGTERM"] as const;
let stopping = false;
const forceListeners: Array<() => void> = [];

const code = await main(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
  waitForStop: () =>
    new Promise((resolve) => {
      const onSignal = (signal: string) => {
        if (stopping) {
          // A second signal: stop waiting for the drain.
          for (const listener of forceListeners) listener();
          process.stderr.write(`${signal} again: exiting without waiting\n`);
          process.exit(1);
        }
        stopping = true;
        resolve(signal);
      };
      for (const signal of signals) process.on(signal, onSignal);
    }),
  onForce: (listener) => forceListeners.push(listener),
});
process.exitCode = code;
for (const signal of signals) process.removeAllListeners(signal);
