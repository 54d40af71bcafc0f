#!/usr/bin/env bash
# Packs the published packages into $1 (a directory) with `npm pack`, as `npm publish` would, and
# prints each tarball's path. Run after `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$1"
mkdir -p "$dest"
for p in core conformance tfjs webgpu-kernel onnx-training; do
  name="$(npm pack --silent --workspace "packages/$p" --pack-destination "$dest" 2>/dev/null | tail -n 1)"
  [ -f "$dest/$name" ] || { echo "pack-all: npm pack of packages/$p produced no tarball" >&2; exit 1; }
  echo "$dest/$name"
done
