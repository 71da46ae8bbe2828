/**
 * A `ProcessTree` kept after its command ended never signals the process that is given the
 * leader's pid next, nor that process's group. Pids are handed out again at will in a pid
 * namespace of the fixture's own (`unshare`, with its own /proc, where writing
 * /proc/sys/kernel/ns_last_pid picks the next pid and nothing else forks): the fixture
 * (test/fixtures/exec/pid-reuse.mjs, over the built dist) reports what it saw as JSON.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const FIXTURE = fileURLToPath(new URL("./fixtures/exec/pid-reuse.mjs", import.meta.url));
const DIST = fileURLToPath(new URL("../dist/index.js", import.meta.url));

beforeAll(() => {
  if (!existsSync(DIST))
    throw new Error(`${DIST} is missing: build first (pnpm --filter @beamclaw/core build)`);
});

interface Seen {
  first: { samePid: boolean; alive: boolean; members: number[]; strangerGroup: number };
  second: {
    samePid: boolean;
    escapedRunning: boolean;
    members: number[];
    escaped: number;
    escapedEnded: boolean;
    strangerGroup: number;
    aliveAfter: boolean;
  };
}

function runFixture(): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "unshare",
      [
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        process.execPath,
        FIXTURE,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`the fixture ended with ${code ?? signal}: ${err.trim()}`));
        return;
      }
      resolve(JSON.parse(out) as Seen);
    });
  });
}

describe("ProcessTree when its leader's pid is handed out again", () => {
  it("takes neither the stranger given the pid nor its group for the tree, and still ends what escaped the tree's session", async () => {
    const seen = await runFixture();

    // The tree was never looked at while its command ran and ended.
    expect(seen.first.samePid).toBe(true);
    expect(seen.first.alive).toBe(false);
    expect(seen.first.members).toEqual([]);
    expect(seen.first.strangerGroup).toBe(3); // signal("SIGKILL") left the stranger's group running

    // The tree had seen a process that left for a session of its own: that one is still it.
    expect(seen.second.samePid).toBe(true);
    expect(seen.second.escapedRunning).toBe(true);
    expect(seen.second.members).toEqual([seen.second.escaped]);
    expect(seen.second.escapedEnded).toBe(true);
    expect(seen.second.strangerGroup).toBe(3);
    expect(seen.second.aliveAfter).toBe(false);
  });
});
