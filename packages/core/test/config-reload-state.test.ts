/**
 * `ConfigService.reload()` outside a running service with a file: before `start()` it threw
 * a bare TypeError (nothing loaded to diff against), after `stop()` it still replaced
 * `current` and announced a change nobody applies, and on a service given a config object it
 * failed on a path that does not exist. Each is now a typed error that changes nothing.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigService, InvalidArgumentError, NoProcessError } from "../src/index.js";
import { failureOf } from "./support.js";

const yaml = (model: string) => `agents: { main: { model: ${model} } }\n`;
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function configFile(model: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-reload-"));
  dirs.push(dir);
  const file = join(dir, "beamclaw.yaml");
  await writeFile(file, yaml(model));
  return file;
}

describe("ConfigService.reload() when it cannot apply", () => {
  it("before start() is a NoProcessError", async () => {
    const service = new ConfigService({ path: await configFile("test/a"), watch: false });
    const error = await failureOf(() => service.reload());
    expect(NoProcessError.isInstance(error)).toBe(true);
  });

  it("after stop() is a NoProcessError, and current stays what it was", async () => {
    const file = await configFile("test/a");
    const service = new ConfigService({ path: file, watch: false });
    await service.start();
    const changes: unknown[] = [];
    service.on("config.changed", (change) => changes.push(change));
    await service.stop();
    await writeFile(file, yaml("test/b"));
    const error = await failureOf(() => service.reload());
    expect(NoProcessError.isInstance(error)).toBe(true);
    expect(service.current.agents[0]?.model).toBe("test/a");
    expect(changes).toEqual([]);
  });

  it("on a service given a config object is an InvalidArgumentError", async () => {
    const service = new ConfigService({ config: { agents: { main: { model: "test/a" } } } });
    await service.start();
    try {
      const error = await failureOf(() => service.reload());
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(/no file/);
      expect(service.current.agents[0]?.model).toBe("test/a");
    } finally {
      await service.stop();
    }
  });
});
