#!/usr/bin/env bash
# Copies trained α-UMi role adapters into the repository as the agent umi ships for the default
# model: assets/agent/smollm2-135m-instruct/{planner,caller,summarizer}/ (PEFT folders, f16).
# Takes each role's final adapter, or its newest checkpoint when the run was stopped early.
#
# Usage: scripts/ship_agent.sh [RUNS_DIR]     (default runs/synth; one subfolder per role)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${1:-runs/synth}"
out="assets/agent/smollm2-135m-instruct"
umi="${CARGO_TARGET_DIR:-$root/target}/release/umi"
[ -x "$umi" ] || cargo build --release -p umi-cli
for role in planner caller summarizer; do
  src="$runs/$role/final/adapter"
  if [ ! -d "$src" ]; then
    last="$(ls -d "$runs/$role"/checkpoint-* 2>/dev/null | sort | tail -1)"
    [ -n "$last" ] || { echo "ship_agent: no adapter for $role in $runs/$role" >&2; exit 1; }
    src="$last/adapter"
  fi
  echo "ship_agent: $role <- $src"
  "$umi" train export --adapter "$src" --out "$out/$role"
  [ -f "$runs/$role/loss.csv" ] && cp "$runs/$role/loss.csv" "$out/$role/loss.csv"
  [ -f "$runs/$role/loss.svg" ] && cp "$runs/$role/loss.svg" "$out/$role/loss.svg"
done
(cd "$out" && sha256sum */adapter_model.safetensors)
