#!/usr/bin/env bash
# GPU measurement: llm-features on onnxruntime's WebGPU provider against the original recipe in PyTorch CUDA, on the
# same random Llama-2-shaped checkpoint (Hugging Face layout, real Llama-2 tokenizer, F32). See BENCHMARKS.md.
#
#   bench/gpu.sh pack                      here, after `npm run build`: writes .gpu/llmf.tar.xz (node, dist, the runtime
#                                          node_modules, the Vulkan loader, the tokenizer; ~45 MB) for a machine with
#                                          no network and no Node
#   bench/gpu.sh run [--size 7b] [--out DIR] [--visualize]
#                                          there (or here, for a dry run): unpack to /tmp/llmf, write the checkpoint,
#                                          time both sides, check llm-features against PyTorch float32/float64, delete
#                                          the checkpoint; results as JSON lines in DIR (default $OUT or /tmp/llmf-out)
#   bench/gpu.sh dry                       here: run --size tiny on SwiftShader and PyTorch on the CPU
#
# On the lent NVIDIA machines (device tool) the whole thing is one call, carrying the bundle:
#   run(command="bash bench/gpu.sh run --size 7b --visualize", carry=[".gpu"], timeout_s=600)
# Sizes: tiny (dry run), 7b (27 GB, fits the 64 GiB disk), 13b (52 GB: only alone, and only if time is left).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mode=${1:-}
shift || true

pack() {
  [ -f dist/src/cli/main.js ] || { echo "gpu.sh pack: run npm run build first" >&2; exit 2; }
  local stage=/tmp/llmf-pack.$$
  rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib" "$stage/node_modules"
  cp "$(readlink -f "$(command -v node)")" "$stage/bin/node"
  mkdir -p "$stage/dist" && (cd dist && find src bench -name "*.js" | tar -cf - -T -) | tar -C "$stage/dist" -xf -
  # Runtime packages only; onnxruntime-node with its linux-x64 binaries alone (the CUDA/TensorRT ones are not bundled).
  for p in onnxruntime-common onnx-proto protobufjs @protobufjs long better-sqlite3 bindings file-uri-to-path @huggingface; do
    [ -e "node_modules/$p" ] && cp -r "node_modules/$p" "$stage/node_modules/"
  done
  mkdir -p "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux"
  cp -r node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist "$stage/node_modules/onnxruntime-node/"
  cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux/"
  rm -rf "$stage/node_modules/better-sqlite3/deps" "$stage/node_modules/better-sqlite3/src"
  cp package.json "$stage/"
  # The Vulkan loader (Debian's libvulkan1); the NVIDIA driver's ICD is on the machine.
  cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$stage/lib/"
  cp ../shared/models/llama2-tokenizer/tokenizer.bin "$stage/tokenizer.bin"
  mkdir -p .gpu
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>"$(git rev-parse --git-path info/exclude)"
  tar -C "$stage" -cf - . | xz -T2 -6 >.gpu/llmf.tar.xz
  rm -rf "$stage"
  ls -la .gpu/llmf.tar.xz
}

run() {
  local size=7b out=${OUT:-/tmp/llmf-out} vis=0
  while [ $# -gt 0 ]; do
    case $1 in
      --size) size=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --visualize) vis=1; shift ;;
      *) echo "gpu.sh run: unknown option $1" >&2; exit 2 ;;
    esac
  done
  mkdir -p "$out"
  local app=/tmp/llmf
  if [ ! -x "$app/bin/node" ]; then
    [ -f .gpu/llmf.tar.xz ] || { echo "gpu.sh run: .gpu/llmf.tar.xz is missing (bench/gpu.sh pack, then carry .gpu)" >&2; exit 2; }
    mkdir -p "$app"
    # python3's lzma: no xz binary needed there
    python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpu/llmf.tar.xz "$app"
  fi
  cp bench/gpu_torch.py "$app/"
  export LD_LIBRARY_PATH="$app/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/llmf-xdg}; mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
  local nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && [ -f "$nv" ]; then export VK_DRIVER_FILES=$nv VK_ICD_FILENAMES=$nv; fi
  local node="$app/bin/node"
  { echo "== $(date -u +%FT%TZ) size $size"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | tee "$out/machine.txt"
  "$node" "$app/dist/src/cli/main.js" devices | tee "$out/devices.json"

  ckpt=/tmp/llmf-ckpt-$size   # global: the EXIT trap deletes it (64 GiB of disk there: one model at a time)
  trap 'rm -rf "$ckpt"' EXIT
  rm -rf "$ckpt"
  "$node" "$app/dist/bench/gpu-checkpoint.js" --size "$size" --out "$ckpt" --tokenizer "$app/tokenizer.bin" | tee "$out/checkpoint.json"
  local batches=${BATCHES:-1,8,32} reps=${REPS:-10}
  [ "$size" = tiny ] && { batches=1,4; reps=3; }
  # llm-features first, then PyTorch: one model in GPU memory at a time.
  "$node" "$app/dist/bench/gpu-step.js" --model "$ckpt" --device webgpu --batches "$batches" --reps "$reps" --check-out "$out/check.json" | tee "$out/llmf.json"
  python3 "$app/gpu_torch.py" --model "$ckpt" --batches "$batches" --reps "$reps" --check "$out/check.json" | tee "$out/torch.json"
  if [ "$vis" = 1 ]; then
    local layers steps=500
    layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$ckpt/config.json")
    [ "$size" = tiny ] && steps=30
    local t0=$SECONDS
    "$node" "$app/dist/src/cli/main.js" visualize --model "$ckpt" --tokenizer "$ckpt/tokenizer.bin" --device webgpu \
      --blocks "1-$layers" --select "[:, :, 0]" --steps "$steps" --json >"$out/visualize.json"
    echo "{\"visualize_blocks\": \"1-$layers\", \"steps\": $steps, \"wall_s\": $((SECONDS - t0))}" | tee "$out/visualize-time.json"
  fi
  rm -f "$out/check.json"
}

case $mode in
  pack) pack ;;
  run) run "$@" ;;
  dry)
    # SwiftShader and the CPU: proves the script end to end, measures nothing about GPUs.
    export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/lib/chromium/vk_swiftshader_icd.json}
    rm -rf /tmp/llmf
    PATH="/usr/bin:$PATH" run --size tiny --out "${1:-/tmp/llmf-dry}" --visualize ;;
  *) echo "usage: bench/gpu.sh pack | run [--size tiny|7b|13b|30b] [--out DIR] [--visualize] | dry [DIR]" >&2; exit 2 ;;
esac
