#!/usr/bin/env bash
# Installs the published packages as a user would: `npm pack` each (core, conformance, tfjs,
# webgpu-kernel, onnx-training), `npm install` the tarballs and the peers a user would add into a fresh project
# outside the workspace, then runs there the README's core quick start, the tfjs example on cpu and
# wasm (loss falls, save/reload with the optimizer, training continues), the conformance CLI on
# every adapter (float32 and float64 core, tfjs cpu/wasm/webgpu, webgpu-kernel, one --browser run)
# and the vitest helper. Any failure fails the script. Run after `npm run build`.
# WebGPU in Node needs VK_ICD_FILENAMES (SwiftShader) and XDG_RUNTIME_DIR, as .ci/run exports.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/lib/chromium/vk_swiftshader_icd.json}"
export NO_COLOR=1

step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

step "pack"
mapfile -t tarballs < <(scripts/pack-all.sh "$work/packs")
printf '%s\n' "${tarballs[@]}"

step "install into a fresh project ($work/app)"
app="$work/app"
mkdir -p "$app"
cp scripts/packed-install/*.mjs "$app/"
cd "$app"
echo '{ "name": "accsgd-user", "private": true, "type": "module" }' >package.json
# As @accsgd/onnx-training's README tells users: onnxruntime-node's postinstall would download CUDA
# binaries from outside the npm registry. npm 11 skips it when allowScripts denies it (an .npmrc
# line would make npm warn on every command); npm 10 has no allowScripts and reads the variable.
npm pkg set allowScripts.onnxruntime-node=false --json
export ONNXRUNTIME_NODE_INSTALL=skip
tfjs_version="$(node -p "require('$repo/packages/tfjs/package.json').peerDependencies['@tensorflow/tfjs-core']")"
npm install --no-audit --no-fund --loglevel=error "${tarballs[@]}" \
  "@tensorflow/tfjs-core@$tfjs_version" "@tensorflow/tfjs-layers@$tfjs_version" \
  "@tensorflow/tfjs-backend-cpu@$tfjs_version" "@tensorflow/tfjs-backend-wasm@$tfjs_version" \
  "@tensorflow/tfjs-backend-webgpu@$tfjs_version" webgpu@^0.6.2 vitest@^3.2.4 \
  onnxruntime-node@1.30.0 onnxruntime-web@1.30.0
# The tarballs' versions, not the workspace's: nothing may resolve back into the repository.
for p in core conformance tfjs webgpu-kernel onnx-training; do
  real="$(cd "node_modules/@accsgd/$p" && pwd -P)"
  case "$real" in "$repo"*) echo "packed-install: @accsgd/$p resolves into the workspace ($real)" >&2; exit 1 ;; esac
done
npm ls --depth=0

step "README: core quick start"
node quickstart-core.mjs

for backend in cpu wasm; do
  step "README: tfjs example on $backend, save and reload with the optimizer"
  node tfjs-train.mjs "$backend"
done

cli() {
  echo "\$ npx accsgd-conformance $*"
  npx --no-install accsgd-conformance "$@"
}
step "CLI: core adapter, float32 and float64"
cli --adapter @accsgd/core/conformance --options '{"dtype":"float32"}'
cli --adapter @accsgd/core/conformance --options '{"dtype":"float64"}'
step "CLI: tfjs adapter on cpu and wasm"
cli --adapter @accsgd/tfjs/conformance --options '{"backend":"cpu"}'
cli --adapter @accsgd/tfjs/conformance --options '{"backend":"wasm"}'
step "CLI: tfjs adapter on webgpu in Node (Dawn)"
cli --adapter @accsgd/tfjs/conformance --options '{"backend":"webgpu"}'
step "CLI: webgpu-kernel adapter in Node (Dawn)"
cli --adapter @accsgd/webgpu-kernel/conformance
step "README: onnx-training quick start (onnxruntime-node cpu)"
node quickstart-onnx.mjs
step "onnx-training: a model written with model-builder, trained with OnnxTrainer, exported"
node train-step-onnx.mjs
step "CLI: onnx-training adapter on onnxruntime-node cpu, onnxruntime-web wasm and onnxruntime-node webgpu"
cli --adapter @accsgd/onnx-training/conformance --options '{"runtime":"node-cpu"}'
cli --adapter @accsgd/onnx-training/conformance --options '{"runtime":"web-wasm"}'
cli --adapter @accsgd/onnx-training/conformance --options '{"runtime":"node-webgpu"}'
step "CLI: --browser (headless Chromium)"
cli --adapter @accsgd/core/conformance --browser
step "CLI: a failing adapter exits 1"
if npx --no-install accsgd-conformance --adapter @accsgd/conformance/mutants --export zeroBufferInit >mutant.txt; then
  echo "packed-install: the CLI passed a mutant" >&2
  exit 1
fi
grep -q 'this matches the known mistake "zero-buffer-init"' mutant.txt
echo "exit 1, diagnosed: $(grep -m1 'diagnosis:' mutant.txt)"

step "vitest helper: describeConformance in the user's own test file"
npx --no-install vitest run conformance.test.mjs

step "packed install: all passed in $((SECONDS - started))s"
