#!/usr/bin/env bash
# Runs ON the GPU machine (the `device` tool), in the last call of scripts/gpu/README.md: trains
# the LoRA adapters listed in .gpu/final/jobs.txt with PyTorch + PEFT on exactly umi's examples
# (`umi train local|global --export-for`), the jobs at once on the one GPU, each schedule fitted
# to its time budget (train_peft.py --time-budget). Leaves in $OUT one NAME.tar per job (the
# adapter folder: adapter_config.json, adapter_model.safetensors in f16, loss.csv) and
# logs.tar.gz (each job's export and training log). The model parts must already be in /tmp/umi
# (or in .gpu/final).
#
# .gpu/final/jobs.txt, one job per line (written by scripts/gpu/prepare.sh from a jobs file):
#   NAME ROLE DATA EPOCHS LR [OPTION=VALUE ...]
#   ROLE: planner, caller, summarizer, or backbone (GLPFT's global stage, `umi train global`)
#   DATA: a file in .gpu/final (.json.xz: α-UMi trajectories)
#   options: init=JOB     merge JOB's adapter into the base first (GLPFT's local stage on the
#                         global one); the job starts when JOB's training has ended
#            split=train  the records `umi train --split` takes (default all; train keeps
#                         `umi eval`'s dev split, every 6th record, out)
#            max_len=N    tokens per example, longer ones keep their end (default 1536)
#            budget=S     seconds of training for this job (default BUDGET_S)
#            batch=N      examples per step for this job (default BATCH; long examples want
#                         fewer: 16 × 4096 tokens hold ~35 GB of activations)
#            extra=FILE   more role samples mixed into the data's (`umi train --extra-samples`:
#                         a file in .gpu/final, .jsonl.xz, e.g. `umi reward eft`'s judge rows
#                         for process-based self-rewarding's M1)
#
# Usage: scripts/gpu/device_train.sh [BATCH=16] [BUDGET_S=380]
set -uo pipefail
batch="${1:-16}" budget="${2:-380}"
w=/tmp/umi out="${OUT:?OUT must be set}"
mkdir -p "$w" "$out" "$w/logs"
cp .gpu/final/gguf-part-* "$w/" 2>/dev/null || true
cat "$w"/gguf-part-* > "$w/model.gguf"
if [ "$(sha256sum "$w/model.gguf" | cut -d' ' -f1)" != "$(cat .gpu/final/model.sha256)" ]; then
  echo "device_train: the model parts in $w do not add up to the model (sha256); send them again" >&2
  ls -la "$w" >&2; exit 1
fi
xz -dc .gpu/final/umi.xz > "$w/umi" && chmod +x "$w/umi"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
t0=$(date +%s)
names=() pids=()
# One job: wait for its init job (if any), export umi's examples, train. Marks
# $w/ended-NAME when it stops, whatever the outcome, so that jobs waiting on it go on or give up.
run_job() {
  local name="$1" role="$2" data="$3" epochs="$4" lr="$5"; shift 5
  local init="" split=all max_len=1536 job_budget="$budget" job_batch="$batch" opt extra_flag=()
  for opt in "$@"; do
    case "$opt" in
      init=*) init="${opt#init=}" ;;
      split=*) split="${opt#split=}" ;;
      max_len=*) max_len="${opt#max_len=}" ;;
      budget=*) job_budget="${opt#budget=}" ;;
      batch=*) job_batch="${opt#batch=}" ;;
      extra=*)
        local extra="${opt#extra=}"
        if [ ! -f "$w/$extra.jsonl" ]; then  # jobs sharing one file: one writes it whole
          xz -dc ".gpu/final/$extra" > "$w/$extra.jsonl.$name" && mv "$w/$extra.jsonl.$name" "$w/$extra.jsonl"
        fi
        extra_flag=(--extra-samples "$w/$extra.jsonl") ;;
      *) echo "device_train: job $name: unknown option $opt" >&2; return 1 ;;
    esac
  done
  local stage=(local --role "$role") init_flag=()
  [ "$role" = backbone ] && stage=(global)
  if [ -n "$init" ]; then
    while [ ! -e "$w/ended-$init" ]; do sleep 2; done
    [ -f "$w/adapter-$init/adapter_model.safetensors" ] \
      || { echo "device_train: job $name: its init job $init left no adapter" >&2; return 1; }
    init_flag=(--init-adapter "$w/adapter-$init")
  fi
  echo "$name: exporting after $(( $(date +%s) - t0 )) s"
  "$w/umi" train "${stage[@]}" --model "$w/model.gguf" --data "$w/$data.json" --split "$split" \
    "${init_flag[@]}" "${extra_flag[@]}" --lora --lora-r 16 --lora-alpha 32 --lr "$lr" --epochs "$epochs" \
    --warmup-ratio 0.03 --max-len "$max_len" \
    --out "$w/unused-$name" --export-for "$w/exp-$name" >"$w/logs/$name-export.log" 2>&1 \
    || { echo "device_train: export of $name failed"; tail -n 20 "$w/logs/$name-export.log"; return 1; }
  echo "$name: training after $(( $(date +%s) - t0 )) s"
  PYTHONUNBUFFERED=1 python3 scripts/gpu/train_peft.py "$w/exp-$name" --out "$w/adapter-$name" \
    --batch-size "$job_batch" --time-budget "$job_budget" --time-limit "$(( job_budget + 40 ))" \
    >"$w/logs/$name-train.log" 2>&1
}
while read -r name role data epochs lr options; do  # prepare.sh wrote it without comments or blanks
  [ -f "$w/$data.json" ] || xz -dc ".gpu/final/$data" > "$w/$data.json"
  # shellcheck disable=SC2086  # the options are words
  ( run_job "$name" "$role" "$data" "$epochs" "$lr" $options; rc=$?; touch "$w/ended-$name"; exit $rc ) &
  names+=("$name") pids+=($!)
done < .gpu/final/jobs.txt
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for name in "${names[@]}"; do
  echo "== $name"; grep -E "examples|time budget|time limit|wrote" "$w/logs/$name-train.log"; tail -n 2 "$w/logs/$name-train.log"
  rm -f "$w/adapter-$name/README.md"
  [ -f "$w/adapter-$name/adapter_model.safetensors" ] && tar -C "$w" -cf "$out/$name.tar" "adapter-$name"
done
tar -C "$w" -czf "$out/logs.tar.gz" logs
echo "trained in $(( $(date +%s) - t0 )) s; status $status"
exit $status
