#!/usr/bin/env bash
# Process-based self-rewarding for the α-UMi planner, the schedule of psrlm-design.md §2.11:
#
#   EFT data  umi reward eft (train and dev splits of the trajectories)
#   M1        the planner continued on IFT (its GLPFT samples) + EFT (umi train local --extra-samples)
#   then for i = 1, 2, 3 (M_i → M_{i+1}):
#     gate G1  umi reward judge-eval of M_i on eft/dev (single-order accuracy, both orders,
#              position consistency, invalid verdicts)
#     dev      umi eval of M_i on the dev split (static metrics; S = mean(Plan ACC, Act. EM,
#              Arg. F1, R-L))
#     pairs    umi reward pairs with M_i as sampler and judge, on a pool of train trajectories
#     DPO      umi train dpo from M_i (reference M_i) → M_{i+1}
#     change   umi eval compare M_i M_{i+1}: each metric's change with its 95 % paired-bootstrap
#              interval
#   stopping when S gains < 1 point, G1 fails, pair yield < 50 %, chosen steps grow past 1.3× M1's,
#   Hallu. rises > 1 point over M1, or after i = 3.
#
# Each stage writes its own folder under OUT and is skipped when its result is there, so a rerun
# after a kill goes on where it stopped (the training stages resume from their checkpoints).
# summary.md gathers every iteration's numbers.
#
# M0 is the planner of the agent umi ships (the spec's M0 is GLPFT's global + local stage; ours
# is trained on the synthetic demo-tool trajectories), continued rather than a fresh adapter:
# the caller and summarizer stay the shipped ones.
#
# Usage: scripts/psrlm.sh [--smoke] [--ignore-gates] [--out DIR] [--iterations N]
#   --smoke         the spec's CPU smoke run: 40 train trajectories mined with 4 candidates, M1
#                   bounded to M1_STEPS (default 120) optimizer steps, one iteration
#   --ignore-gates  report a failed gate or stopping rule in summary.md but go on (an iteration
#                   past a failed G1 is not the paper's method; the summary says so); a pool
#                   without a pair still stops
# Environment (all optional): UMI (the umi binary; default: built here), MODEL, PLANNER (M0's
#   planner adapter), CALLER, SUMMARIZER, DATA (α-UMi trajectories, default the OOD train file),
#   DEV_EVERY (6), M1_STEPS, M1_BATCH (8), M1_LR (1e-4, the spec's LoRA value), MAX_LEN (1024, training), WIDTH, POOLS ("100 200 250";
#   trajectories mined per iteration), MAX_NEW_TOKENS (256, the dev evaluation), STEP_TOKENS (192,
#   most tokens of a sampled candidate step), GEN_FLAGS (more
#   flags for every model command, e.g. "--max-input-tokens 96 --quant q8_0").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

smoke=0 out="" iterations="" ignore_gates=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --ignore-gates) ignore_gates=1 ;;
    --out) out="$2"; shift ;;
    --iterations) iterations="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "psrlm.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

agent=assets/agent/smollm2-135m-instruct
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PLANNER="${PLANNER:-$agent/planner}"
CALLER="${CALLER:-$agent/caller}"
SUMMARIZER="${SUMMARIZER:-$agent/summarizer}"
DATA="${DATA:-../shared/data/alpha-umi-toolbench/ood-train/out_of_domain_train300.json}"
DEV_EVERY="${DEV_EVERY:-6}"
M1_BATCH="${M1_BATCH:-8}"
M1_LR="${M1_LR:-1e-4}"
MAX_LEN="${MAX_LEN:-1024}"
MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-256}"
STEP_TOKENS="${STEP_TOKENS:-192}"
GEN_FLAGS="${GEN_FLAGS:-}"
if [ "$smoke" = 1 ]; then
  out="${out:-runs/psrlm-smoke}"; iterations="${iterations:-1}"
  WIDTH="${WIDTH:-4}"; POOLS="${POOLS:-40}"; M1_STEPS="${M1_STEPS:-120}"
else
  out="${out:-runs/psrlm}"; iterations="${iterations:-3}"
  WIDTH="${WIDTH:-6}"; POOLS="${POOLS:-100 200 250}"; M1_STEPS="${M1_STEPS:-}"
fi
if [ -z "${UMI:-}" ]; then
  UMI="${CARGO_TARGET_DIR:-$root/target}/release/umi"
  [ -x "$UMI" ] || cargo build --release -p umi-cli
fi
for f in "$MODEL" "$PLANNER" "$CALLER" "$SUMMARIZER" "$DATA"; do
  [ -e "$f" ] || { echo "psrlm.sh: $f is missing (scripts/setup.sh installs the default model)" >&2; exit 1; }
done
mkdir -p "$out"
log() { printf '\n=== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
# shellcheck disable=SC2086  # GEN_FLAGS is a list of flags
gen() { "$UMI" "$@" --model "$MODEL" --raw-prompts $GEN_FLAGS; }
# json FILE EXPR: a value of a JSON file (EXPR in Python over `d`)
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
split=(--data "$DATA" --dev-every "$DEV_EVERY")
adapter() { echo "$out/m$1/run/final/adapter"; } # M_i's planner adapter

log "EFT rows: gold planner steps against objectively worse ones (train and dev)"
for s in train dev; do
  [ -s "$out/eft/$s/eft.jsonl" ] || "$UMI" reward eft "${split[@]}" --split "$s" --out "$out/eft/$s"
done

log "M1: the planner continued on IFT + EFT (psrlm-design.md §2.9)"
if [ ! -d "$(adapter 1)" ]; then
  steps=(); [ -n "$M1_STEPS" ] && steps=(--max-steps "$M1_STEPS")
  resume=(); ls -d "$out/m1/run/checkpoint-"* >/dev/null 2>&1 && resume=(--resume)
  "$UMI" train local --role planner "${split[@]}" --split train --model "$MODEL" \
    --adapter "$PLANNER" --extra-samples "$out/eft/train/eft.jsonl" \
    --lr "$M1_LR" --warmup-ratio 0.2 --weight-decay 0.01 --batch-size "$M1_BATCH" --max-len "$MAX_LEN" \
    --save-every 8 "${steps[@]}" --out "$out/m1/run" "${resume[@]}"
fi

# evaluate M_i: judge accuracy on eft/dev and the static dev metrics
evaluate() {
  local m="$out/m$1"
  [ -s "$m/judge/report.json" ] ||
    gen reward judge-eval --eft "$out/eft/dev/eft.jsonl" --planner-adapter "$(adapter "$1")" --out "$m/judge"
  [ -s "$m/eval/report.json" ] && [ "$(json "$m/eval/report.json" "d['metrics']['samples']")" -gt 0 ] ||
    gen eval "${split[@]}" --split dev --max-new-tokens "$MAX_NEW_TOKENS" --planner-adapter "$(adapter "$1")" \
      --caller-adapter "$CALLER" --summarizer-adapter "$SUMMARIZER" --label "M$1" --out "$m/eval"
}

summary="$out/summary.md"
{
  echo "# Process-based self-rewarding: $(date -u +%F) ($([ "$smoke" = 1 ] && echo smoke || echo full) schedule)"
  echo
  echo "M0 planner \`$PLANNER\` on \`$MODEL\`; data \`$DATA\` (dev every $DEV_EVERY); width $WIDTH; pools $POOLS."
  echo
  echo "| model | judge acc. (single / both orders) | position consistency | invalid | Plan ACC | Act. EM | Hallu. | Arg. F1 | R-L | S | pairs / points | chosen tokens |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$summary"
row() { # row I [pairs-report]
  local m="$out/m$1" j e
  j="$m/judge/report.json"; e="$m/eval/report.json"
  python3 - "$j" "$e" "$1" "${2:-}" "${3:-}" >> "$summary" <<'PY'
import json, sys
j, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["metrics"]
pct = lambda x: f"{100 * x:.1f}"
s = (e["plan_em"] + e["action_em"] + e["argument_f1"] + e["rouge_l"]) / 4
pairs = sys.argv[4] and json.load(open(sys.argv[4]))
mined = f"{pairs['pairs']} / {pairs['points']}" if pairs else "–"
print(f"| M{sys.argv[3]} | {pct(j['acc_single'])} / {pct(j['acc_both'])} | {pct(j['position_consistency'])} | "
      f"{pct(j['invalid_rate'])} | {pct(e['plan_em'])} | {pct(e['action_em'])} | {pct(e['hallucination_rate'])} | "
      f"{pct(e['argument_f1'])} | {pct(e['rouge_l'])} | {pct(s)} | {mined} | {sys.argv[5] or '–'} |")
PY
}
# mean chosen-step tokens of a pairs.jsonl (token ids where recorded, else whitespace words)
chosen_tokens() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = [len(r["chosen_ids"]) if r.get("chosen_ids") else len((r.get("chosen") or "").split()) for r in rows]
print(f"{sum(n) / len(n):.1f}" if n else "0")
PY
}

read -r -a pools <<< "$POOLS"
log "M1: judge accuracy and dev metrics"
evaluate 1
stop="" m1_chosen="" printed=0 latest=1 ignored=()
# halt REASON: stop the schedule, or with --ignore-gates note the reason and go on
halt() {
  if [ "$ignore_gates" = 1 ]; then ignored+=("$1"); log "ignored (--ignore-gates): $1"; return 1; fi
  stop="$1"
}
for ((i = 1; i <= iterations; i++)); do
  m="$out/m$i" next="$out/m$((i + 1))"
  # gate G1 (psrlm-design.md §2.12)
  g1="$(json "$m/judge/report.json" "int(d['acc_single'] >= 0.75 and d['acc_both'] >= 0.60 and d['position_consistency'] >= 0.80 and d['invalid_rate'] <= 0.02)")"
  if [ "$g1" != 1 ] && halt "gate G1 failed for M$i (judge accuracy on eft/dev below the spec's bar of 75 % single-order, 60 % both orders, 80 % position consistency): the model cannot judge its own steps"; then
    break
  fi
  pool="${pools[$((i - 1))]:-${pools[-1]}}"
  log "M$i → M$((i + 1)): mining pairs on $pool train trajectories (width $WIDTH)"
  gen reward pairs "${split[@]}" --split train --limit-trajectories "$pool" --width "$WIDTH" --max-new-tokens "$STEP_TOKENS" \
    --planner-adapter "$(adapter "$i")" --out "$m/pairs"
  chosen="$(chosen_tokens "$m/pairs/pairs.jsonl")"
  [ -n "$m1_chosen" ] || m1_chosen="$chosen"
  row "$i" "$m/pairs/report.json" "$chosen"; printed=$i
  if [ "$(json "$m/pairs/report.json" "d['pairs']")" = 0 ]; then
    stop="no pair mined at M$i (every decision point tied: the judge does not discriminate)"
    break
  fi
  if [ "$(json "$m/pairs/report.json" "int(d['yield'] >= 0.5)")" != 1 ] &&
    halt "pair yield below 50 % of decision points at M$i (the judge no longer discriminates)"; then
    break
  fi
  log "M$((i + 1)): step-DPO from M$i (reference M$i)"
  if [ ! -d "$(adapter $((i + 1)))" ]; then
    resume=(); ls -d "$next/run/checkpoint-"* >/dev/null 2>&1 && resume=(--resume)
    "$UMI" train dpo --role planner --pairs "$m/pairs/pairs.jsonl" --model "$MODEL" \
      --adapter "$(adapter "$i")" --max-len "$MAX_LEN" --save-every 8 --out "$next/run" "${resume[@]}"
  fi
  evaluate $((i + 1)); latest=$((i + 1))
  "$UMI" eval compare "$m/eval" "$next/eval" --json > "$next/compare.json"
  "$UMI" eval compare "$m/eval" "$next/eval" > "$next/compare.md"
  # stopping rules (psrlm-design.md §2.11)
  verdict="$(python3 - "$next/compare.json" "$out/m1/eval/report.json" "$next/eval/report.json" "$chosen" "$m1_chosen" <<'PY'
import json, sys
c = {m["metric"]: m for m in json.load(open(sys.argv[1]))["metrics"]}
m1 = json.load(open(sys.argv[2]))["metrics"]["hallucination_rate"]
now = json.load(open(sys.argv[3]))["metrics"]["hallucination_rate"]
s = c["S"]
if s["after"] - s["before"] < 0.01:
    print(f"S changed {100 * (s['after'] - s['before']):+.2f} points (95 % interval [{100 * s['low']:+.2f}, {100 * s['high']:+.2f}]), less than the 1 point the schedule asks")
elif now - m1 > 0.01:
    print(f"Hallu. rose {100 * (now - m1):+.2f} points over M1")
elif float(sys.argv[4]) > 1.3 * float(sys.argv[5]):
    print(f"chosen steps grew to {sys.argv[4]} tokens, past 1.3x M1's {sys.argv[5]} (length hacking)")
PY
)"
  if [ -n "$verdict" ] && halt "after M$((i + 1)): $verdict"; then break; fi
done
[ "$printed" -ge "$latest" ] || row "$latest"
{
  echo
  echo "Stopped: ${stop:-after $iterations iteration(s)}."
  for note in "${ignored[@]}"; do
    echo; echo "**Not the paper's schedule:** $note; the run went on (--ignore-gates)."
  done
  for c in "$out"/m*/compare.md; do
    [ -f "$c" ] || continue
    echo; echo "### $(basename "$(dirname "$c")") against the model before it"; echo; cat "$c"
  done
} >> "$summary"
log "done: $summary"
cat "$summary"
