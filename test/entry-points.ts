/**
 * The entry-point specification every published package runs: each `exports` entry of its
 * package.json, imported from the built package in a fresh Node.js process the way a user's
 * app loads it, starts nothing. No timer, socket, server, child process or file handle is
 * left open, no process listener is added and no global is defined, which is what the
 * package's `"sideEffects": false` promises bundlers.
 *
 * A package's test file is one call:
 *
 * ```ts
 * describeEntryPoints(new URL("..", import.meta.url), {
 *   "@beamclaw/example": ["createExample", "Example"],
 * });
 * ```
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/** What a fresh process saw while importing one entry point. */
export interface EntryPointImport {
  /** The module's export names, sorted. */
  exports: string[];
  /** Event-loop resources (`process.getActiveResourcesInfo()`) that the import added. */
  opened: string[];
  /** `process` events that gained a listener during the import. */
  processListeners: string[];
  /** Properties the import defined on `globalThis`. */
  globals: string[];
}

/**
 * Globals that dependencies define for their own bookkeeping, which no package of ours can
 * avoid: zod 4's shared registry and config, and the dispatcher Node's built-in `fetch`
 * (undici) registers the first time it is touched.
 */
const DEPENDENCY_GLOBALS = [/^__zod_global/, /^Symbol\(undici\.globalDispatcher\.\d+\)$/];

interface PackageJson {
  name: string;
  exports: Record<string, unknown>;
}

function readPackageJson(packageDir: URL): PackageJson {
  return JSON.parse(readFileSync(new URL("package.json", packageDir), "utf8")) as PackageJson;
}

/**
 * The import specifiers of a package's `exports` entries (`"."` is the package name,
 * `"./testing"` is `name/testing`), leaving out `./package.json`.
 */
export function entryPointSpecifiers(packageDir: URL): string[] {
  const pkg = readPackageJson(packageDir);
  return Object.keys(pkg.exports)
    .filter((entry) => !entry.endsWith(".json"))
    .map((entry) => (entry === "." ? pkg.name : `${pkg.name}/${entry.slice(2)}`));
}

/**
 * The environment of a user's app: the variables vitest sets (`VITEST*`, `TEST`,
 * `NODE_ENV=test`) are removed, because code may rightly behave differently inside vitest.
 */
function appEnvironment(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("VITEST") || key === "TEST" || key === "NODE_ENV") continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/**
 * Runs an ES module script in a fresh Node.js process whose working directory is the
 * package (so the package's name resolves to its built self) and returns the JSON value of
 * the last line it prints. `process.stdout` and `process.stderr` are opened before `source`
 * runs: they belong to the process, and Node's module loader or a dependency's `debug`
 * may open them lazily. The process is killed if it has not exited after `timeoutMs`.
 */
export async function runInFreshProcess<T>(
  packageDir: URL,
  source: string,
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<T> {
  const child = spawn(
    process.execPath,
    ["--input-type=module", "-e", `process.stdout; process.stderr;\n${source}`],
    { cwd: packageDir, env: appEnvironment(env), stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  // A script that never exits is killed, and its output so far is reported.
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  }).finally(() => clearTimeout(timer));
  if (code !== 0) throw new Error(`the script exited with ${code}:\n${stderr}${stdout}`);
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] ?? "null") as T;
}

/** Imports `specifier` in a fresh process and reports what the import left behind. */
export function importInFreshProcess(
  packageDir: URL,
  specifier: string,
): Promise<EntryPointImport> {
  return runInFreshProcess<EntryPointImport>(
    packageDir,
    `
    const resources = () => process.getActiveResourcesInfo();
    const listeners = () => Object.fromEntries(process.eventNames().map((e) => [String(e), process.listenerCount(e)]));
    const beforeResources = resources();
    const beforeListeners = listeners();
    const beforeGlobals = new Set(Reflect.ownKeys(globalThis).map(String));
    const mod = await import(${JSON.stringify(specifier)});
    // A turn of the loop, so whatever the import scheduled has started.
    await new Promise((resolve) => setImmediate(resolve));
    const opened = resources();
    for (const type of beforeResources) {
      const at = opened.indexOf(type);
      if (at >= 0) opened.splice(at, 1);
    }
    const afterListeners = listeners();
    const report = JSON.stringify({
      exports: Object.keys(mod).sort(),
      opened,
      processListeners: Object.keys(afterListeners).filter((e) => afterListeners[e] > (beforeListeners[e] ?? 0)),
      globals: Reflect.ownKeys(globalThis).map(String).filter((k) => !beforeGlobals.has(k)),
    });
    // Exit explicitly: a handle the import leaked would otherwise keep this process alive.
    process.stdout.write(report + "\\n", () => process.exit(0));
    `,
  );
}

/**
 * Registers the entry-point specification of the package in `packageDir`. `expected` maps
 * every import specifier of the package's `exports` to export names it must provide (a
 * sample, not the full list), so an entry added to package.json without a test fails.
 */
export function describeEntryPoints(packageDir: URL, expected: Record<string, string[]>): void {
  const specifiers = entryPointSpecifiers(packageDir);

  describe("package entry points", () => {
    it("are exactly the exports of package.json", () => {
      expect([...specifiers].sort()).toEqual(Object.keys(expected).sort());
    });

    it.each(specifiers)(
      "importing %s starts nothing: no handle, process listener or global is left behind",
      async (specifier) => {
        const loaded = await importInFreshProcess(packageDir, specifier);
        expect(loaded.exports).toEqual(expect.arrayContaining(expected[specifier] ?? []));
        expect(loaded.exports.length).toBeGreaterThan(0);
        expect(loaded.opened, "event-loop resources opened by the import").toEqual([]);
        expect(loaded.processListeners, "process events listened to").toEqual([]);
        const globals = loaded.globals.filter((g) => !DEPENDENCY_GLOBALS.some((re) => re.test(g)));
        expect(globals, "globals defined").toEqual([]);
      },
    );
  });
}
