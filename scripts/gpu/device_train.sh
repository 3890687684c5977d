#!/usr/bin/env bash
# Runs ON the GPU machine (the `device` tool), in the last call of scripts/gpu/README.md: trains
# the LoRA adapters listed in .gpu/final/jobs.txt with PyTorch + PEFT on exactly umi's examples
# (`umi train local --export-for`), all jobs at once on the one GPU, each schedule fitted to the
# time budget (train_peft.py --time-budget). Leaves in $OUT one NAME.tar per job (the adapter
# folder: adapter_config.json, adapter_model.safetensors in f16, loss.csv) and logs.tar.gz (each
# job's export and training log). The model parts must already be in /tmp/umi (or in .gpu/final).
#
# .gpu/final/jobs.txt, one job per line (written by scripts/gpu/prepare.sh from a jobs file):
#   NAME ROLE DATA EPOCHS LR      DATA: a file in .gpu/final (.json.xz: α-UMi trajectories)
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
while read -r name role data epochs lr; do  # prepare.sh wrote it without comments or blanks
  [ -f "$w/$data.json" ] || xz -dc ".gpu/final/$data" > "$w/$data.json"
  "$w/umi" train local --role "$role" --model "$w/model.gguf" --data "$w/$data.json" --split all \
    --lora --lora-r 16 --lora-alpha 32 --lr "$lr" --epochs "$epochs" --warmup-ratio 0.03 --max-len 1536 \
    --out "$w/unused-$name" --export-for "$w/exp-$name" >"$w/logs/$name-export.log" 2>&1 &
  names+=("$name") pids+=($!)
done < .gpu/final/jobs.txt
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "device_train: export of ${names[$i]} failed"; tail -n 20 "$w/logs/${names[$i]}-export.log"; exit 1; }
done
echo "exported ${names[*]} in $(( $(date +%s) - t0 )) s"
pids=()
for name in "${names[@]}"; do
  PYTHONUNBUFFERED=1 python3 scripts/gpu/train_peft.py "$w/exp-$name" --out "$w/adapter-$name" \
    --batch-size "$batch" --time-budget "$budget" --time-limit "$(( budget + 40 ))" >"$w/logs/$name-train.log" 2>&1 &
  pids+=($!)
done
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
