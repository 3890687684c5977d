#!/usr/bin/env bash
# The whole-split live evaluation of EVAL.md in one command: `umi eval live` on every task of
# data/synth/test.jsonl, split into one shard per CPU core (each shard one thread, as the
# published runs), then merged into OUT/ with its report.md for all tasks. Resumable: run it
# again with the same arguments and each shard continues where it stopped (a finished run
# only shows its report again).
#
# Usage: scripts/eval_live.sh OUT [extra `umi eval live` flags...]
#   scripts/eval_live.sh eval/live-shipped --quant q8_0
#   scripts/eval_live.sh eval/live-new-caller --quant q8_0 --caller-adapter runs/caller/checkpoint-000120/adapter
# Env: SHARDS (default: the number of cores), TASKS (default data/synth/test.jsonl, made by
# `umi data synth --out data/synth` when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ $# -ge 1 ] || { sed -n 2,11p "$0" >&2; exit 2; }
out="$1"
shift
umi="${CARGO_TARGET_DIR:-$root/target}/release/umi"
[ -x "$umi" ] || cargo build --release -p umi-cli
tasks="${TASKS:-data/synth/test.jsonl}"
if [ ! -f "$tasks" ]; then
  [ "$tasks" = data/synth/test.jsonl ] || { echo "eval_live: no task file $tasks" >&2; exit 1; }
  "$umi" data synth --out data/synth
fi
if [ -f "$out/results.jsonl" ] && [ "$(grep -c . "$out/results.jsonl")" -ge "$(grep -c . "$tasks")" ]; then
  # a finished run: rewrite and show its report rather than evaluate every task again
  "$umi" eval live --tasks "$tasks" --out "$out" "$@"
  cat "$out/report.md"
  exit 0
fi
shards="${SHARDS:-$(nproc)}"
pids=()
for ((i = 0; i < shards; i++)); do
  RAYON_NUM_THREADS=1 "$umi" eval live --tasks "$tasks" --shard "$i/$shards" --out "$out-s$i" "$@" \
    > "$out-s$i.log" 2>&1 &
  pids+=("$!")
done
failed=0
for ((i = 0; i < shards; i++)); do
  wait "${pids[$i]}" || { echo "eval_live: shard $i failed, see $out-s$i.log" >&2; failed=1; }
done
[ "$failed" = 0 ] || exit 1
mkdir -p "$out"
cp "$out-s0/settings.json" "$out/"
for ((i = 0; i < shards; i++)); do cat "$out-s$i/results.jsonl"; done > "$out/results.jsonl"
"$umi" eval live --tasks "$tasks" --out "$out" "$@"   # nothing left to run: the report for all tasks
for ((i = 0; i < shards; i++)); do rm -rf "$out-s$i" "$out-s$i.log"; done
cat "$out/report.md"
