/**
 * A `beamclaw.yaml` saved while `ConfigService.start()` reads it: the watcher used to start
 * only after the read, so a save landing in between was never seen and the service kept the
 * older file until the next save. The watcher now starts first.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type BeamClawConfig, ConfigService } from "../src/index.js";

/** When set, the next read of this file saves `next` over it right after reading it. */
let saveDuringRead: { file: string; next: string } | undefined;
vi.mock("node:fs/promises", async (original) => {
  const real = await original<typeof import("node:fs/promises")>();
  const readFile = (async (...args: Parameters<typeof real.readFile>) => {
    const text = await real.readFile(...args);
    const save = saveDuringRead;
    if (save !== undefined && args[0] === save.file) {
      saveDuringRead = undefined;
      await real.writeFile(save.file, save.next);
    }
    return text;
  }) as typeof real.readFile;
  return { ...real, readFile };
});

const yaml = (model: string) => `agents: { main: { model: ${model} } }\n`;
const dirs: string[] = [];
const services: ConfigService[] = [];
afterEach(async () => {
  saveDuringRead = undefined;
  for (const s of services.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe("ConfigService start", () => {
  it("a save landing while start() reads the file is applied", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-gap-"));
    dirs.push(dir);
    const file = join(dir, "beamclaw.yaml");
    await writeFile(file, yaml("test/old"));
    saveDuringRead = { file, next: yaml("test/new") };
    const service = new ConfigService({ path: file, debounceMs: 10 });
    services.push(service);
    const changed = new Promise<BeamClawConfig>((resolve) => {
      service.on("config.changed", ({ config }) => resolve(config));
    });
    await service.start();
    expect(saveDuringRead).toBeUndefined();
    expect(service.current.agents[0]?.model).toBe("test/old");
    const timeout = new Promise<"no reload">((resolve) => {
      const timer = setTimeout(() => resolve("no reload"), 3_000);
      void changed.then(() => clearTimeout(timer));
    });
    const next = await Promise.race([changed, timeout]);
    expect(next === "no reload" ? next : next.agents[0]?.model).toBe("test/new");
  });

  it("a file that does not load leaves no watcher behind", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-gap-"));
    dirs.push(dir);
    const file = join(dir, "beamclaw.yaml");
    await writeFile(file, "agents: [");
    const service = new ConfigService({ path: file });
    await expect(service.start()).rejects.toMatchObject({ code: "CONFIG_INVALID" });
    // The run fails on a leaked handle (an open fs.watch) if one was left.
  });
});
