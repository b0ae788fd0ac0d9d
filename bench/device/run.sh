#!/bin/sh
# On the device machine (no network), from the repository root, with .device/ carried
# (built here by prepare.sh). Within 8 minutes: unpacks the Vulkan loader and Deno, runs our
# engine and transformers' generate_batch on 64 streams of the SmolLM2-shaped model (the GPU
# target), the MoE layer slice, then `deno task bench --quick` in the time left. Everything
# lands in $OUT: gpu.txt, streams.json, transformers.json, moe.jsonl, bench.json, bench.md,
# bench.log, run.log.
set -u
: "${OUT:=/tmp/out}"
mkdir -p "$OUT"
start=$(date +%s)
budget=${BUDGET_S:-470}
left() { echo $((budget - ($(date +%s) - start))); }
log() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$OUT/run.log"; }

for f in .device/debs/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
mkdir -p /tmp/denobin /tmp/deno_dir
xz -dc .device/deno.xz >/tmp/denobin/deno && chmod +x /tmp/denobin/deno
tar -xJf .device/deno_dir.tar.xz -C /tmp/deno_dir
export PATH="/tmp/denobin:$PATH" DENO_DIR=/tmp/deno_dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
export XDG_RUNTIME_DIR=/tmp/xdg-runtime
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  deno --version | head -1
  deno run --cached-only -A --no-check=remote bench/device/adapter.ts
} >"$OUT/gpu.txt" 2>&1
log "setup done: $(head -2 "$OUT/gpu.txt" | tail -1)"

# The GPU target: 64 concurrent streams, ours then transformers, on the same weights.
log "ours: 64 streams"
timeout 80 deno run --cached-only -A --no-check=remote bench/device/streams.ts --model-dir /tmp/smol \
  --streams 64 --tokens 64 --json "$OUT/streams.json" >>"$OUT/run.log" 2>&1 || log "streams.ts failed ($?)"
log "transformers generate_batch: 64 streams"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/device/transformers_generate_batch.py --model-dir /tmp/smol \
  --streams 64 --tokens 64 --out "$OUT/transformers.json" >>"$OUT/run.log" 2>&1 || log "transformers failed ($?)"

# Issue 21's MoE layer slice (Qwen3-30B-A3B-shaped, against a dense layer of the same active
# parameters), gpu family: f16 experts, then gpt-oss MXFP4 experts. A JSON line each.
for q in none mxfp4; do
  log "moe_layer: --quantization $q"
  timeout 60 deno run --cached-only -A --no-check=remote bench/moe_layer.ts --family gpu --quantization "$q" \
    >>"$OUT/moe.jsonl" 2>>"$OUT/run.log" || log "moe_layer $q failed ($?)"
done

t=$(left)
[ "$t" -gt 60 ] || { log "no time left for bench --quick (${t} s)"; exit 0; }
log "bench --quick with ${t} s left"
timeout "$t" deno run --cached-only -A --no-check=remote bench/main.ts --quick --json "$OUT/bench.json" \
  >"$OUT/bench.md" 2>"$OUT/bench.log" || log "bench exited $? (timeout 124: the sections done before it are in bench.log only)"
log "done"
