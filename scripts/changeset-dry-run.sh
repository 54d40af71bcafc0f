#!/usr/bin/env bash
# Dry run of the release: copies the files git tracks (and untracked ones it does not ignore, such as
# new changesets) to a temp dir outside the checkout, runs `changeset version` there, and prints each
# package's version before -> after with its internal dependency ranges. Fails when an internal range
# does not include the version it points at, or when a 0.x package would leave 0.x (a major bump
# of a package that has never had a 1.0; set ACCSGD_ALLOW_MAJOR=1 when that is meant).
# The real checkout is never changed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue # deleted in the working tree
  mkdir -p "$copy/$(dirname "$f")"
  cp -p "$f" "$copy/$f"
done
ln -s "$repo/node_modules" "$copy/node_modules"
node -e '
  const { readdirSync, readFileSync, existsSync, writeFileSync } = require("node:fs");
  const dirs = readdirSync("packages").filter((d) => existsSync(`packages/${d}/package.json`));
  const out = Object.fromEntries(dirs.map((d) => [d, JSON.parse(readFileSync(`packages/${d}/package.json`, "utf8")).version]));
  writeFileSync(process.argv[1], JSON.stringify(out));
' "$copy/.versions-before.json"
(cd "$copy" && "$repo/node_modules/.bin/changeset" version >/dev/null)
cd "$copy"
node - "$repo/node_modules/semver" <<'JS'
const { readdirSync, readFileSync, existsSync } = require('node:fs');
const semver = require(process.argv[2]);
const before = JSON.parse(readFileSync('.versions-before.json', 'utf8'));
const manifests = readdirSync('packages')
  .filter((d) => existsSync(`packages/${d}/package.json`))
  .map((d) => ({ dir: d, ...JSON.parse(readFileSync(`packages/${d}/package.json`, 'utf8')) }));
const versions = Object.fromEntries(manifests.map((m) => [m.name, m.version]));
const problems = [];
console.log('changeset version (dry run, in a copy):');
for (const m of manifests) {
  const from = before[m.dir];
  const internal = ['dependencies', 'peerDependencies', 'devDependencies'].flatMap((field) =>
    Object.entries(m[field] ?? {})
      .filter(([name]) => name in versions)
      .map(([name, range]) => {
        if (!semver.satisfies(versions[name], range))
          problems.push(`${m.name} ${field} ${name}@"${range}" does not include ${versions[name]}`);
        return `${name}@${range}${field === 'dependencies' ? '' : ` (${field})`}`;
      }),
  );
  const priv = m.private ? ' (private)' : '';
  console.log(`  ${m.name}${priv}: ${from} -> ${m.version}${internal.length ? `; ${internal.join(', ')}` : ''}`);
  if (!m.private && semver.major(from) === 0 && semver.major(m.version) > 0 && process.env.ACCSGD_ALLOW_MAJOR !== '1')
    problems.push(`${m.name} would go from ${from} to ${m.version}: a 0.x package leaving 0.x (a "major" changeset?)`);
}
const left = readdirSync('.changeset').filter((f) => f.endsWith('.md') && f !== 'README.md');
if (left.length) problems.push(`changesets not consumed: ${left.join(', ')}`);
if (problems.length) {
  console.error(`changeset dry run: FAILED\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('changeset dry run: ok (internal ranges include the new versions)');
JS
