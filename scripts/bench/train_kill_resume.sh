#!/usr/bin/env bash
# Reliability check of `umi train` (issue 15): kill -9 at random moments (model loading, steps,
# checkpoint writes) and `--resume` each time, until the run finishes; then the loss curve must
# hold every step exactly once. Tiny model, synthetic data, about a minute.
#
# Usage: scripts/bench/train_kill_resume.sh [PATH/TO/umi]   (default: $CARGO_TARGET_DIR/release/umi)
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
umi="${1:-${CARGO_TARGET_DIR:-$root/target}/release/umi}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$umi" data synth --train 40 --test 1 --out "$tmp/data" >/dev/null 2>&1 || { echo "umi data synth failed" >&2; exit 1; }
out="$tmp/run"
args=(train local --role planner --model "$root/assets/tiny/gguf/tiny-f32.gguf" --data "$tmp/data/train.json"
      --split all --lora --lora-r 4 --lora-alpha 8 --lr 1e-3 --max-steps 400 --save-every 2 --out "$out")
kills=0 finished=0
for i in $(seq 1 1000); do
  resume=(); [ -d "$out" ] && resume=(--resume)
  "$umi" "${args[@]}" "${resume[@]}" >"$tmp/log" 2>&1 &
  pid=$!
  sleep "0.$(printf %02d $((RANDOM % 40 + 5)))"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"; wait "$pid" 2>/dev/null; kills=$((kills + 1))
  else
    wait "$pid" && finished=1 || { echo "attempt $i failed:" >&2; tail -n 5 "$tmp/log" >&2; exit 1; }
    break
  fi
done
[ "$finished" = 1 ] || { echo "did not finish in 1000 attempts" >&2; exit 1; }
python3 - "$out/loss.csv" "$kills" <<'PY'
import csv, sys
steps = [int(r[0]) for r in list(csv.reader(open(sys.argv[1])))[1:]]
ok = steps == list(range(1, 401))
print(f"finished after {sys.argv[2]} kill -9; loss.csv has {len(steps)} rows, steps 1..400 once each: {ok}")
sys.exit(0 if ok else 1)
PY
