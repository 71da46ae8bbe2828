#!/usr/bin/env node
/**
 * `pnpm docs:snippets`: keeps the code in docs/*.md working. Every ```ts block is a
 * self-contained program; all of them are typechecked (strict) against the built packages,
 * and the blocks whose info string says `ts run` are also run, each in its own Node.js
 * process that must exit with 0 by itself within 30 s (so a snippet that forgets to stop
 * something fails).
 *
 * The snippets live in a temporary directory outside the workspace whose node_modules links
 * to the built packages (`pnpm build` first), as a user's project would see them.
 *
 *   pnpm docs:snippets            # typecheck all, run the `ts run` ones
 *   pnpm docs:snippets runtime    # only docs/runtime.md
 *   pnpm docs:snippets --verbose  # and print what the snippets print
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = fileURLToPath(new URL("..", import.meta.url));
const verbose = process.argv.includes("--verbose");
const only = process.argv.slice(2).find((arg) => !arg.startsWith("--"));
const RUN_TIMEOUT_MS = 30_000;

/** Modules a snippet may import, and where they are in the workspace. */
const modules = {
  "@types/node": "node_modules/@types/node",
  zod: "packages/core/node_modules/zod",
  ioredis: "packages/store-redis/node_modules/ioredis",
  "@opentelemetry/api": "packages/core/node_modules/@opentelemetry/api",
};
for (const dir of readdirSync(join(root, "packages"))) {
  const pkgPath = join(root, "packages", dir, "package.json");
  if (!existsSync(pkgPath)) continue;
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
  if (!pkg.private) modules[pkg.name] = `packages/${dir}`;
}

/** Every ```ts block of docs/*.md, with where it is. */
function snippets() {
  const found = [];
  const docs = join(root, "docs");
  for (const file of readdirSync(docs).sort()) {
    if (!file.endsWith(".md") || (only && file !== `${only}.md`)) continue;
    const lines = readFileSync(join(docs, file), "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const open = lines[i].match(/^```(ts|typescript)(?:\s+(.*))?$/);
      if (!open) continue;
      const start = i + 1;
      let end = start;
      while (end < lines.length && lines[end] !== "```") end++;
      const name = `${file.replace(/\.md$/, "")}-L${start}`;
      found.push({
        name,
        where: `docs/${file}:${start}`,
        run: (open[2] ?? "").split(/\s+/).includes("run"),
        code: lines.slice(start, end).join("\n"),
      });
      i = end;
    }
  }
  return found;
}

const all = snippets();
if (all.length === 0) {
  console.error("docs-snippets: no ```ts blocks found");
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), "beamclaw-docs-snippets-"));
let failed = 0;
try {
  for (const [name, path] of Object.entries(modules)) {
    const target = join(work, "node_modules", name);
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(join(root, path), target, "dir");
  }
  writeFileSync(join(work, "package.json"), '{ "type": "module", "private": true }\n');
  const files = [];
  for (const snippet of all) {
    const file = join(work, `${snippet.name}.ts`);
    // `export {}` makes every snippet a module, so top-level await is allowed.
    writeFileSync(file, `${snippet.code}\nexport {};\n`);
    files.push(file);
    snippet.file = file;
  }

  const options = {
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2023.d.ts"],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ["node"],
    strict: true,
    noUncheckedIndexedAccess: true,
    skipLibCheck: true,
    noEmit: true,
  };
  const program = ts.createProgram(files, options);
  const byFile = new Map(all.map((s) => [s.file, s]));
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const snippet = diagnostic.file && byFile.get(diagnostic.file.fileName);
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
    if (!snippet) {
      console.error(`error: ${message}`);
    } else {
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const [doc, first] = snippet.where.split(":");
      console.error(`${doc}:${Number(first) + line + 1}: ${message}`);
    }
    failed++;
  }
  console.log(`typechecked ${all.length} snippets`);

  for (const snippet of all.filter((s) => s.run)) {
    const js = snippet.file.replace(/\.ts$/, ".mjs");
    const { outputText } = ts.transpileModule(snippet.code, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    });
    writeFileSync(js, outputText);
    const result = spawnSync(process.execPath, [js], {
      cwd: work,
      encoding: "utf8",
      timeout: RUN_TIMEOUT_MS,
      env: { ...process.env, NODE_ENV: "production" },
    });
    if (result.status === 0) {
      console.log(`ran ${snippet.where}`);
      if (verbose) console.log(result.stdout.trimEnd());
    } else {
      failed++;
      const why = result.error?.code === "ETIMEDOUT" ? "did not exit within 30 s" : "failed";
      console.error(`${snippet.where}: ${why} (exit ${result.status ?? result.signal})`);
      console.error(`${result.stdout}${result.stderr}`.trim());
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (failed > 0) {
  console.error(`docs-snippets: ${failed} problem(s)`);
  process.exit(1);
}
