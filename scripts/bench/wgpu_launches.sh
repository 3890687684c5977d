#!/usr/bin/env bash
# Kernel launches of umi's wgpu backend per decode token and per LoRA training step, counted
# from cubecl's profiling log (`CUBECL_DEBUG_OPTION=profile` logs every kernel it runs, one
# `| duration | name` line each), for one or more umi binaries: a default build (burn's kernel
# fusion on) against one built without it. The counts depend on the model and the code, not on
# the adapter's speed, so lavapipe (Mesa's software Vulkan, what CI has) gives the same counts
# a GPU does; on a GPU, where each launch costs the driver and wgpu time, they are what fusion
# saves. Prints a markdown section (BENCHMARKS.md takes it from scripts/bench/wgpu_launches.md).
#
# Usage: scripts/bench/wgpu_launches.sh LABEL=UMI_BINARY [LABEL=UMI_BINARY...]
#   cargo build --release -p umi-cli                       # fusion on (default features)
#   CARGO_TARGET_DIR=target-nofusion cargo build --release -p umi-cli --no-default-features --features flex,wgpu
#   scripts/bench/wgpu_launches.sh "fusion=target/release/umi" "no fusion=target-nofusion/release/umi" \
#     > scripts/bench/wgpu_launches.md
# Env: MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf), ADAPTER (the adapter's name for the text),
# ROLE_ADAPTER (default assets/agent/smollm2-135m-instruct/planner: a LoRA adapter attached unmerged,
# as the agent runs each role, for the third column).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[ $# -ge 1 ] || { sed -n 2,16p "$0" >&2; exit 2; }
model="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
role_adapter="${ROLE_ADAPTER:-assets/agent/smollm2-135m-instruct/planner}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# launches BINARY ARGS...: the kernels one `umi bench --backend wgpu` run launched
launches() {
  local bin="$1"
  shift
  local try
  # a second try where the first fails: lavapipe's teardown has crashed at exit ("double free
  # or corruption") after complete runs, now and then
  for try in 1 2; do
    if CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=stderr RUST_BACKTRACE=0 \
      "$bin" bench --backend wgpu --model "$model" "$@" > /dev/null 2> "$log"; then
      grep -c '^| ' "$log" || true
      return
    fi
    echo "wgpu_launches: $bin bench $* failed (try $try):" >&2
    tail -3 "$log" | cut -c1-200 >&2
  done
  exit 1
}

rows=()
for pair in "$@"; do
  label="${pair%%=*}"
  bin="${pair#*=}"
  [ -x "$bin" ] || { echo "wgpu_launches: $bin is not an executable" >&2; exit 1; }
  echo "wgpu_launches: $label ($bin)" >&2
  # one run of 4 and one of 12 new tokens after the same 8-token prompt: the difference is 8
  # decode tokens' kernels (prefill, warm-up and set-up cancel out)
  d4=$(launches "$bin" --prompt-tokens 8 --new-tokens 4 --runs 1)
  d12=$(launches "$bin" --prompt-tokens 8 --new-tokens 12 --runs 1)
  # the same with a role's LoRA adapter attached (the agent's path: every projection's product
  # plus the adapter's two)
  r4=$(launches "$bin" --prompt-tokens 8 --new-tokens 4 --runs 1 --adapter "$role_adapter")
  r12=$(launches "$bin" --prompt-tokens 8 --new-tokens 12 --runs 1 --adapter "$role_adapter")
  # the same with the weights held in f16 (`--quant f16`: the web app's choice on adapters with
  # shader-f16, most GPUs), a role adapter attached
  h4=$(launches "$bin" --prompt-tokens 8 --new-tokens 4 --runs 1 --quant f16 --adapter "$role_adapter")
  h12=$(launches "$bin" --prompt-tokens 8 --new-tokens 12 --runs 1 --quant f16 --adapter "$role_adapter")
  # one and two timed LoRA steps (after the same warm-up step): the difference is one step
  t1=$(launches "$bin" --train --prompt-tokens 16 --batch-size 1 --runs 1)
  t2=$(launches "$bin" --train --prompt-tokens 16 --batch-size 1 --runs 2)
  rows+=("$label|$(( (d12 - d4) / 8 ))|$(( (r12 - r4) / 8 ))|$(( (h12 - h4) / 8 ))|$(( t2 - t1 ))")
done

# Env ADAPTER names the adapter in the text (umi prints none); else vulkaninfo's first device
adapter="${ADAPTER:-$(vulkaninfo --summary 2>/dev/null | awk -F= '/deviceName/ {gsub(/^ +| +$/, "", $2); print $2; exit}' || true)}"
echo "## wgpu: kernel launches per step"
echo
echo "Counted $(date -u +%Y-%m-%d) by \`scripts/bench/wgpu_launches.sh\` on ${adapter:-the default Vulkan adapter}"
echo "(umi at $(git rev-parse --short HEAD)): the kernels cubecl ran (its profiling log, one line each) for"
echo "one decode token of \`$(basename "$model")\` (f32, after an 8-token prompt: the difference between"
echo "runs of 12 and 4 new tokens, ÷ 8) and for one LoRA step (r 8 on all seven projections, 1 × 16"
echo "tokens, forward, backward and AdamW: the difference between runs of 2 and 1 steps); *with a role"
echo "adapter*: a decode token with \`$role_adapter\` attached unmerged, as the agent runs each role;"
echo "*f16 weights*: the same with the weights held in f16 (\`--quant f16\`), the web app's choice on adapters"
echo "with \`shader-f16\`."
echo "Counts, not times: they do not depend on the adapter's speed."
echo
echo "| build | launches per decode token | with a role adapter | f16 weights, with a role adapter | launches per LoRA step |"
echo "|---|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  IFS='|' read -r label d r h t <<< "$row"
  echo "| $label | $(python3 -c "print(f'{$d:,} | {$r:,} | {$h:,} | {$t:,}')") |"
done
if [ "${#rows[@]}" -gt 1 ]; then
  IFS='|' read -r first_label first_d first_r first_h first_t <<< "${rows[0]}"
  IFS='|' read -r last_label last_d last_r last_h last_t <<< "${rows[-1]}"
  echo
  echo "$last_label ÷ $first_label: $(python3 -c "print(f'{$last_d / $first_d:.2f}× the launches per decode token ({$last_r / $first_r:.2f}× with a role adapter, {$last_h / $first_h:.2f}× with f16 weights and a role adapter), {$last_t / $first_t:.2f}× per LoRA step')")."
fi
