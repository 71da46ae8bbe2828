import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  name: string;
  exports: Record<string, unknown>;
};

describe("package entry points", () => {
  const entries = Object.keys(pkg.exports).filter((e) => !e.endsWith(".json"));

  it.each(entries)(
    "importing %s starts nothing: no timer, socket or handle is left open",
    async (entry) => {
      const specifier = entry === "." ? pkg.name : `${pkg.name}/${entry.slice(2)}`;
      // A fresh process imports the built package the way a user's app would.
      // stdio is opened first: Node's module loader opens stderr lazily (through node:assert's
      // color check) while resolving a package, and that handle is Node's, not ours.
      const script = `
      process.stdout; process.stderr;
      const before = process.getActiveResourcesInfo().length;
      const mod = await import(${JSON.stringify(specifier)});
      await new Promise((r) => setImmediate(r));
      const after = process.getActiveResourcesInfo();
      console.log(JSON.stringify({ exports: Object.keys(mod), extra: after.length - before, after }));
    `;
      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
        cwd: new URL("..", import.meta.url),
      });
      const result = JSON.parse(stdout.trim()) as {
        exports: string[];
        extra: number;
        after: string[];
      };
      expect(result.exports).toEqual(
        expect.arrayContaining([
          "createAnthropicProvider",
          "createOpenAIProvider",
          "createOpenAICompatibleProvider",
        ]),
      );
      expect(result.extra, `open after import: ${result.after.join(", ")}`).toBe(0);
    },
  );
});
