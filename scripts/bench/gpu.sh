#!/usr/bin/env bash
# GPU benchmark: runs ON the GPU machine (the `device` tool), umi's wgpu backend against
# transformers / PEFT on CUDA with the same random-weight models (make_random_llama.py: the
# SmolLM2-135M shape and the TinyLlama-1.1B shape, f16 files upcast to f32 at load), the rules of
# common.py (512-token prompt, 128 greedy new tokens, median of 3; LoRA r 8 on all projections,
# 8 x 512 per step). umi's first process is timed alone ("first run": shaders compiled and tuned
# on the way) and then a second process ("warm").
#
# Here, before the call (scripts/bench/README.md, "GPU"):
#   scripts/gpu/slim_tree.sh on
#   mkdir -p .gpu/bench && strip -o .gpu/umi target/release/umi && xz -T2 -6 -c .gpu/umi > .gpu/bench/umi.xz
#   git rev-parse --short HEAD > .gpu/bench/commit
#   optionally, to measure what burn's kernel fusion (default features) buys on this GPU, a build
#   without it beside: CARGO_TARGET_DIR=target-nofusion cargo build --release -p umi-cli
#   --no-default-features --features flex,wgpu, stripped and xz'd to .gpu/bench/umi-nofusion.xz
#   (the call then runs its SmolLM2 rows too: about 40 s more)
#   and the Vulkan loader .debs in .gl/ (the device tool's README)
# The call: carry [".gpu/bench", ".gl"], command `scripts/bench/gpu.sh`, timeout_s <= 300.
# Leaves $OUT/gpu.jsonl (a meta line, then one JSON line per measurement as `umi bench` prints it,
# with its label) and $OUT/gpu.log; copy gpu.jsonl to scripts/bench/gpu_results.jsonl and
# re-render BENCHMARKS.md (render.py --gpu).
set -uo pipefail
out="${OUT:?OUT must be set (the device tool)}"
w=/tmp/bench
mkdir -p "$w"
exec > >(tee "$out/gpu.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
xz -dc .gpu/bench/umi.xz > "$w/umi" && chmod +x "$w/umi"
nofusion=""
if [ -f .gpu/bench/umi-nofusion.xz ]; then
  xz -dc .gpu/bench/umi-nofusion.xz > "$w/umi-nofusion" && chmod +x "$w/umi-nofusion" && nofusion="$w/umi-nofusion"
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)
echo "$gpu"
python3 -c 'import json, sys; print(json.dumps({"meta": {"date": sys.argv[1], "gpu": sys.argv[2], "umi_commit": sys.argv[3]}}))' \
  "$(date -u +%Y-%m-%d)" "$gpu" "$(cat .gpu/bench/commit 2>/dev/null || echo unknown)" > "$out/gpu.jsonl"
t0=$(date +%s)
python3 scripts/bench/make_random_llama.py "$w/smollm2" --shape smollm2 2>/dev/null
python3 scripts/bench/make_random_llama.py "$w/tinyllama" 2>/dev/null &
tiny=$!
# one measurement: LABEL TIMEOUT_S COMMAND...; its JSON line gets "label" and "wall_s"
measure() {
  local label=$1 limit=$2; shift 2
  local s=$(date +%s.%N) line
  line=$(timeout "$limit" "$@" 2>"$w/$label.err" | tail -n 1)
  local rc=$? e=$(date +%s.%N)
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    echo "gpu.sh: $label failed (no result line; rc $rc):"; tail -n 5 "$w/$label.err"; return
  fi
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["label"]=sys.argv[2]; d["wall_s"]=round(float(sys.argv[4])-float(sys.argv[3]),1); print(json.dumps(d))' \
    "$line" "$label" "$s" "$e" | tee -a "$out/gpu.jsonl"
}
U="$w/umi bench --backend wgpu --prompt-tokens 512 --new-tokens 128"
measure umi-smollm2-first 60 $U --model "$w/smollm2" --runs 1
measure umi-smollm2-warm 60 $U --model "$w/smollm2" --runs 3
measure torch-smollm2-f32 60 python3 scripts/bench/peer_transformers.py "$w/smollm2" --device cuda --runs 3
measure umi-smollm2-train 60 $w/umi bench --backend wgpu --train --batch-size 8 --prompt-tokens 512 --runs 3 --model "$w/smollm2"
measure peft-smollm2-train 60 python3 scripts/bench/peer_peft_train.py "$w/smollm2" --device cuda --batch-size 8 --runs 3
if [ -n "$nofusion" ]; then
  measure umi-nofusion-smollm2-warm 60 $nofusion bench --backend wgpu --prompt-tokens 512 --new-tokens 128 --model "$w/smollm2" --runs 3
  measure umi-nofusion-smollm2-train 60 $nofusion bench --backend wgpu --train --batch-size 8 --prompt-tokens 512 --runs 3 --model "$w/smollm2"
fi
wait "$tiny"
measure umi-tinyllama-warm 90 $U --model "$w/tinyllama" --runs 3
measure torch-tinyllama-f32 60 python3 scripts/bench/peer_transformers.py "$w/tinyllama" --device cuda --runs 3
measure torch-tinyllama-bf16 60 python3 scripts/bench/peer_transformers.py "$w/tinyllama" --device cuda --runs 3 --dtype bfloat16
echo "gpu.sh: done in $(( $(date +%s) - t0 )) s"
