#!/usr/bin/env bash
# Runs ON the GPU machine (the `device` tool), in the last call of scripts/gpu/README.md: trains
# the planner, caller and summarizer LoRA adapters of the shipped agent with PyTorch + PEFT on
# exactly umi's examples (`umi train local --export-for`), all three at once on the one GPU, and
# leaves in $OUT: {planner,caller,summarizer}/adapter_{config.json,model.safetensors} (f16) and
# logs.tar.gz (each role's loss.csv and log). The model parts must already be in /tmp/umi.
#
# Usage: scripts/gpu/device_train.sh [EPOCHS=2] [BATCH=16] [TIME_LIMIT_S=330] [LR=5e-4]
set -uo pipefail
epochs="${1:-2}" batch="${2:-16}" limit="${3:-330}" lr="${4:-5e-4}"
w=/tmp/umi out="${OUT:?OUT must be set}"
mkdir -p "$w" "$out" "$w/logs"
cp .gpu/final/gguf-part-* "$w/" 2>/dev/null || true
cat "$w"/gguf-part-* > "$w/model.gguf"
if [ "$(sha256sum "$w/model.gguf" | cut -d' ' -f1)" != "$(cat .gpu/final/model.sha256)" ]; then
  echo "device_train: the model parts in $w do not add up to the model (sha256); send them again" >&2
  ls -la "$w" >&2; exit 1
fi
xz -dc .gpu/final/umi.xz > "$w/umi" && chmod +x "$w/umi"
xz -dc .gpu/final/train.json.xz > "$w/train.json"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
t0=$(date +%s)
pids=()
for role in planner caller summarizer; do
  "$w/umi" train local --role "$role" --model "$w/model.gguf" --data "$w/train.json" --split all \
    --lora --lora-r 16 --lora-alpha 32 --lr "$lr" --warmup-ratio 0.05 --max-len 1536 \
    --out "$w/unused-$role" --export-for "$w/exp-$role" >"$w/logs/$role-export.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { echo "device_train: export failed"; tail -n 20 "$w"/logs/*-export.log; exit 1; }; done
echo "exported in $(( $(date +%s) - t0 )) s"
pids=()
for role in planner caller summarizer; do
  PYTHONUNBUFFERED=1 python3 scripts/gpu/train_peft.py "$w/exp-$role" --out "$out/$role" \
    --batch-size "$batch" --epochs "$epochs" --time-limit "$limit" >"$w/logs/$role-train.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for role in planner caller summarizer; do
  echo "== $role"; tail -n 4 "$w/logs/$role-train.log"
  [ -f "$out/$role/loss.csv" ] && mv "$out/$role/loss.csv" "$w/logs/$role-loss.csv"
  rm -f "$out/$role/README.md"
done
tar -C "$w" -czf "$out/logs.tar.gz" logs
echo "trained in $(( $(date +%s) - t0 )) s; status $status"
exit $status
