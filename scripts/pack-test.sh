#!/usr/bin/env bash
# The packages as a user gets them: `pnpm pack` every published package, install the tarballs
# with npm into a fresh directory outside the workspace, check that every @beamclaw/* package
# there came from a tarball (never the registry, never the workspace), typecheck and run
# examples/embed-basic against them (`--scripted`, no model needed), and run the `beamclaw`
# command. Needs the packages built (`pnpm build`); the npm registry serves the third-party
# dependencies.
#
#   bash scripts/pack-test.sh        # or: pnpm test:pack
#   BEAMCLAW_PACK_TEST_KEEP=1 ...    # keep the temporary directory for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

work="$(mktemp -d "${TMPDIR:-/tmp}/beamclaw-pack-test.XXXXXX")"
case "$work" in "$repo"/*)
  echo "pack-test: $work is inside the workspace" >&2
  exit 1
  ;;
esac
if [ -z "${BEAMCLAW_PACK_TEST_KEEP:-}" ]; then
  trap 'rm -rf "$work"' EXIT
else
  echo "pack-test: keeping $work"
fi
tarballs="$work/tarballs"
app="$work/app"
mkdir -p "$tarballs" "$app/src"

echo "--- pack"
published=()
for dir in packages/*/; do
  [ -f "$dir/package.json" ] || continue
  if [ "$(node -p "require('./${dir}package.json').private === true")" = "true" ]; then continue; fi
  for entry in $(node -p "Object.values(require('./${dir}package.json').exports).map((e) => typeof e === 'string' ? e : e.import).filter((p) => p.endsWith('.js')).join(' ')"); do
    [ -f "$dir/$entry" ] || { echo "pack-test: $dir$entry is missing; run pnpm build first" >&2; exit 1; }
  done
  (cd "$dir" && pnpm pack --pack-destination "$tarballs" >/dev/null)
  published+=("$(node -p "require('./${dir}package.json').name")")
done
ls -1 "$tarballs"

echo "--- install into $app"
embed="examples/embed-basic/package.json"
zod_range="$(node -p "require('./$embed').dependencies.zod")"
tsx_range="$(node -p "require('./$embed').devDependencies.tsx")"
ts_range="$(node -p "require('./package.json').devDependencies.typescript")"
types_node_range="$(node -p "require('./package.json').devDependencies['@types/node']")"
# Every @beamclaw/* dependency, at any depth, is pinned to its tarball by `overrides`, so a
# `^0.0.0` range that pnpm pack wrote for `workspace:^` can never reach the registry.
node - "$app" "$tarballs" <<'EOF'
const { readdirSync, writeFileSync } = require("node:fs");
const [app, tarballs] = process.argv.slice(2);
const files = readdirSync(tarballs).filter((f) => f.endsWith(".tgz"));
const name = (file) => `@beamclaw/${file.replace(/^beamclaw-/, "").replace(/-\d+\.\d+\.\d+.*\.tgz$/, "")}`;
const local = Object.fromEntries(files.map((f) => [name(f), `file:${tarballs}/${f}`]));
writeFileSync(`${app}/package.json`, `${JSON.stringify({
  name: "beamclaw-pack-test",
  private: true,
  type: "module",
  dependencies: local,
  overrides: local,
}, null, 2)}\n`);
EOF
cd "$app"
npm install --no-fund --no-audit --loglevel=error \
  "zod@$zod_range" "tsx@$tsx_range" "typescript@$ts_range" "@types/node@$types_node_range"

echo "--- every @beamclaw/* package comes from a tarball"
node - "${published[@]}" <<'EOF'
const lock = require("./package-lock.json");
const expected = new Set(process.argv.slice(2));
const problems = [];
const found = new Set();
for (const [path, entry] of Object.entries(lock.packages)) {
  const name = path.match(/(?:^|\/)node_modules\/(@beamclaw\/[^/]+)$/)?.[1];
  if (!name) continue;
  found.add(name);
  if (path !== `node_modules/${name}`) problems.push(`${path}: a second copy`);
  if (!/^file:.*\.tgz$/.test(entry.resolved ?? "")) {
    problems.push(`${path}: resolved from ${entry.resolved ?? entry.link ?? "?"}`);
  }
  const manifest = JSON.stringify(require(`./${path}/package.json`));
  if (manifest.includes("workspace:")) problems.push(`${path}: package.json still says workspace:`);
}
for (const name of expected) if (!found.has(name)) problems.push(`${name}: not installed`);
for (const name of found) if (!expected.has(name)) problems.push(`${name}: not a published package`);
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log([...found].sort().join("\n"));
EOF

echo "--- embed-basic against the tarballs"
cp "$repo/examples/embed-basic/src/main.ts" src/main.ts
cat > tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2023"],
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "types": ["node"],
    "strict": true,
    "skipLibCheck": true,
    "noEmit": true
  },
  "include": ["src"]
}
EOF
./node_modules/.bin/tsc -p tsconfig.json
output="$(timeout 60 ./node_modules/.bin/tsx src/main.ts --scripted)"
echo "$output"
for expected in '[tool temperature({"city":"Oslo"})]' 'It is -3 °C in Oslo.' '[completed; 2 steps; 70+14 tokens]' '[session: 2 model calls, 4 messages, tools: temperature ×1]'; do
  if [[ "$output" != *"$expected"* ]]; then
    echo "pack-test: the output lacks: $expected" >&2
    exit 1
  fi
done

echo "--- the beamclaw command"
./node_modules/.bin/beamclaw --version

echo "pack-test: ${#published[@]} packages packed, installed and run outside the workspace"
