/**
 * A `beamclaw.yaml` saved while `ConfigService.start()` reads it: the watcher used to start
 * only after the read, so a save landing in between was never seen and the service kept the
 * older file until the next save. The watcher now starts first, and start() confirms its read
 * (the file must hold the same bytes a confirmation interval later), so the save is seen by
 * start() itself: it starts with the newer file.
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
  const { withReadEndHook } = await import("./fs-read-hooks.js");
  return withReadEndHook(real, () => async (path) => {
    const save = saveDuringRead;
    if (save === undefined || path !== save.file) return;
    // The read has reached the end of the file: the save lands right after it.
    saveDuringRead = undefined;
    await real.writeFile(save.file, save.next);
  });
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
  it("a save landing while start() reads the file is what it starts with", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-gap-"));
    dirs.push(dir);
    const file = join(dir, "beamclaw.yaml");
    await writeFile(file, yaml("test/old"));
    saveDuringRead = { file, next: yaml("test/new") };
    const service = new ConfigService({ path: file, debounceMs: 10 });
    services.push(service);
    const changes: BeamClawConfig[] = [];
    service.on("config.changed", ({ config }) => changes.push(config));
    await service.start();
    expect(saveDuringRead).toBeUndefined();
    expect(service.current.agents[0]?.model).toBe("test/new");
    // The save's own file event finds nothing new to apply.
    expect(changes.map((config) => config.agents[0]?.model)).not.toContain("test/old");
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
