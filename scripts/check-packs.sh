#!/usr/bin/env bash
# Lints the tarballs `npm pack` makes of the published packages: publint (--strict: warnings fail)
# and Are the Types Wrong (profile esm-only: the packages are ESM only, `"type": "module"` with
# import-only exports, so a require() from CommonJS is not supported by design; every other rule
# applies; exports that are not modules are left out), and that each has its LICENSE, source maps that carry their sources, and no
# declaration maps pointing at unshipped sources. Run after `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mapfile -t tarballs < <(scripts/pack-all.sh "$dir/packs")
status=0
for tgz in "${tarballs[@]}"; do
  echo "== $(basename "$tgz")"
  npx --no-install publint run "$tgz" --strict || status=1
  # Exports that are assets, not modules (the WGSL source, the PyTorch reference), are not for attw.
  read -r -a assets < <(tar -xOzf "$tgz" package/package.json | node -e '
    const m = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
    console.log(Object.entries(m.exports).filter(([, t]) => typeof t === "string" && !/\.(js|mjs|d\.ts)$/.test(t)).map(([k]) => k).join(" "));')
  npx --no-install attw "$tgz" --profile esm-only --format table-flipped --no-color --no-emoji \
    ${assets[@]:+--exclude-entrypoints "${assets[@]}"} || status=1
  x="$dir/x/$(basename "$tgz" .tgz)"
  mkdir -p "$x"
  tar -xzf "$tgz" -C "$x"
  node -e '
    const { readdirSync, readFileSync, existsSync } = require("node:fs");
    const { join } = require("node:path");
    const root = process.argv[1];
    const problems = [];
    if (!existsSync(join(root, "package/LICENSE"))) problems.push("no LICENSE");
    const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
    const files = walk(join(root, "package"));
    let maps = 0;
    for (const f of files) {
      if (f.endsWith(".d.ts.map")) problems.push(`declaration map ${f.slice(root.length)} (its sources are not shipped)`);
      else if (f.endsWith(".js.map")) {
        maps++;
        const m = JSON.parse(readFileSync(f, "utf8"));
        if (!m.sourcesContent || m.sourcesContent.length !== m.sources.length || m.sourcesContent.some((s) => typeof s !== "string"))
          problems.push(`${f.slice(root.length)} lacks sourcesContent`);
      }
    }
    if (problems.length) { console.error(problems.join("\n")); process.exit(1); }
    console.log(`files: LICENSE present; ${maps} source maps, each with its sources inline; no declaration maps`);
  ' "$x" || status=1
done
exit $status
