/** The README's example is test/readme-example.ts, which is typechecked with the package. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/** Its imports (in any order: the formatter sorts a relative one last) and its other lines. */
function parts(code: string): { imports: string[]; body: string } {
  const lines = code.trim().split("\n");
  return {
    imports: lines.filter((line) => line.startsWith("import ")).sort(),
    body: lines.filter((line) => !line.startsWith("import ")).join("\n"),
  };
}

describe("README", () => {
  it("shows the example that test/readme-example.ts typechecks", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    const source = readFileSync(new URL("./readme-example.ts", import.meta.url), "utf8");
    const code = source
      .replace(/^(\/\/.*\n)+/, "")
      .replace('from "../src/index.js";', 'from "@beamclaw/mcp";');
    expect(block.trim().length).toBeGreaterThan(0);
    expect(parts(code)).toEqual(parts(block));
  });
});
