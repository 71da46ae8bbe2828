/**
 * A watched `beamclaw.yaml` that is a symlink: edited where it resolves to (a dotfiles
 * link into another directory), or swapped the way a Kubernetes ConfigMap volume swaps its
 * `..data` link. Both are changes of the configuration, and stop() leaves no watcher.
 */
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type BeamClawConfig, ConfigService } from "../src/index.js";

const yaml = (model: string) => `agents: { main: { model: ${model} } }\n`;

const dirs: string[] = [];
const services: ConfigService[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-audit-config-"));
  dirs.push(dir);
  return dir;
}

/** The next configuration applied whose main agent has `model`. */
function changedTo(service: ConfigService, model: string): Promise<BeamClawConfig> {
  return new Promise((resolve) => {
    const off = service.on("config.changed", ({ config }) => {
      if (config.agents[0]?.model !== model) return;
      off();
      resolve(config);
    });
  });
}

/** The open `fs.watch` handles, once those closed have finished closing (a loop turn). */
async function watchers(): Promise<number> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  return process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;
}

describe("ConfigService with a symlinked file", () => {
  it("follows an edit of the file a symlink points to in another directory", async () => {
    const root = await tempDir();
    await mkdir(join(root, "dotfiles"));
    await mkdir(join(root, "app"));
    const real = join(root, "dotfiles", "beamclaw.yaml");
    await writeFile(real, yaml("local/one"));
    const link = join(root, "app", "beamclaw.yaml");
    await symlink(real, link);
    const service = await new ConfigService({ path: link, debounceMs: 10 }).start();
    services.push(service);
    expect(service.current.agents[0]?.model).toBe("local/one");

    const changed = changedTo(service, "local/two");
    await writeFile(real, yaml("local/two"));
    await changed;
    expect(service.current.agents[0]?.model).toBe("local/two");
  });

  it("follows a Kubernetes-style swap of the ..data link, then edits at the new target", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "..v1"));
    await writeFile(join(dir, "..v1", "beamclaw.yaml"), yaml("local/one"));
    await symlink("..v1", join(dir, "..data"));
    await symlink(join("..data", "beamclaw.yaml"), join(dir, "beamclaw.yaml"));
    const service = await new ConfigService({
      path: join(dir, "beamclaw.yaml"),
      debounceMs: 10,
    }).start();
    services.push(service);

    // The kubelet writes the new version beside the old and swaps the link atomically; the
    // file's own name never changes in the directory. (The old version is kept here.)
    const swapped = changedTo(service, "local/two");
    await mkdir(join(dir, "..v2"));
    await writeFile(join(dir, "..v2", "beamclaw.yaml"), yaml("local/two"));
    await symlink("..v2", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await swapped;

    // Now watched where it resolves to after the swap.
    const edited = changedTo(service, "local/three");
    await writeFile(join(dir, "..v2", "beamclaw.yaml"), yaml("local/three"));
    await edited;
    expect(service.current.agents[0]?.model).toBe("local/three");
  });

  it("stop() closes the watchers of the link's directory and of its target's", async () => {
    const before = await watchers();
    const root = await tempDir();
    await mkdir(join(root, "real"));
    const real = join(root, "real", "beamclaw.yaml");
    await writeFile(real, yaml("local/one"));
    const link = join(root, "beamclaw.yaml");
    await symlink(real, link);
    const service = await new ConfigService({ path: link, debounceMs: 10 }).start();
    services.push(service);
    const changed = changedTo(service, "local/two");
    await writeFile(real, yaml("local/two"));
    await changed;
    // The link's directory and the target's.
    expect(await watchers()).toBe(before + 2);
    await service.stop();
    expect(await watchers()).toBe(before);
  });
});
