/**
 * A watched `beamclaw.yaml` saved very often. A flood of file events while a reload is
 * reading the file used to overflow the service's mailbox (1,000 messages): `send` threw in
 * the `fs.watch` callback, an uncaught exception. And a file saved again within every
 * debounce window never reloaded at all. Now events waiting for a reload are coalesced, and a
 * reload happens at the latest `max(1 s, 10 × debounceMs)` after the first unapplied change.
 */
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ConfigService } from "../src/index.js";

/** While set, `realpath` (read at the start of each reload) waits for it: a slow disk. */
let gate: Promise<void> | undefined;
vi.mock("node:fs/promises", async (original) => {
  const real = await original<typeof import("node:fs/promises")>();
  return {
    ...real,
    realpath: async (...args: Parameters<typeof real.realpath>) => {
      if (gate !== undefined) await gate;
      return real.realpath(...args);
    },
  };
});

const yaml = (model: string) => `agents: { main: { model: ${model} } }\n`;
const dirs: string[] = [];
const services: ConfigService[] = [];
afterEach(async () => {
  gate = undefined;
  for (const s of services.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function watched(debounceMs: number) {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-flood-"));
  dirs.push(dir);
  const file = join(dir, "beamclaw.yaml");
  await writeFile(file, yaml("test/m0"));
  const service = new ConfigService({ path: file, debounceMs });
  services.push(service);
  await service.start();
  /** An editor's save: a temp file renamed over the config. */
  const save = async (model: string) => {
    await writeFile(`${file}.tmp`, yaml(model));
    await rename(`${file}.tmp`, file);
  };
  return { service, save };
}

const model = (service: ConfigService) => service.current.agents[0]?.model;

describe("ConfigService under a flood of saves", () => {
  it("coalesces events that arrive while a reload reads the file: no overflow, the last save applies", async () => {
    const { service, save } = await watched(0);
    const thrown: unknown[] = [];
    const onUncaught = (error: unknown) => thrown.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      let release!: () => void;
      gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      // The first save starts a reload, which now waits on the slow disk...
      await save("test/m1");
      for (let i = 0; i < 50 && service.mailboxSize === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      // ...while 1,500 more saves land, each seen by the watcher.
      for (let i = 2; i <= 1_500; i++) {
        await save(`test/m${i}`);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(service.mailboxSize).toBeLessThan(10);
      gate = undefined;
      release();
      for (let i = 0; i < 200 && model(service) !== "test/m1500"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(model(service)).toBe("test/m1500");
      expect(service.status).toBe("running");
    } finally {
      process.off("uncaughtException", onUncaught);
    }
    expect(thrown).toEqual([]);
  });

  it("a file saved again within every debounce window still reloads within the longest wait", async () => {
    const { service, save } = await watched(100);
    // A save every 40 ms for 1.6 s: never 100 ms of quiet.
    const stopAt = Date.now() + 1_600;
    let saves = 0;
    let seenBeforeQuiet: string | undefined;
    while (Date.now() < stopAt) {
      await save(`test/s${++saves}`);
      await new Promise((resolve) => setTimeout(resolve, 40));
      if (model(service) !== "test/m0") seenBeforeQuiet ??= model(service);
    }
    expect(seenBeforeQuiet).toMatch(/^test\/s[0-9]+$/);
  });
});
