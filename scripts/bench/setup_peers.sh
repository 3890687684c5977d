#!/usr/bin/env bash
# Install the peer runtimes for the CPU benchmark into a venv OUTSIDE the repo.
# Every peer is optional: a failure is recorded and the script goes on.
#   VENV=/work/venv-bench (default)   PARALLEL=1 (torch download alongside the llama.cpp compile)
# Result: $VENV/peers.txt lists what installed (and what failed); logs in $VENV/logs/.
set -u
VENV=${VENV:-/work/venv-bench}
PARALLEL=${PARALLEL:-1}
NICE="nice -n 19"

# Pinned versions (the ones behind shared/docs/performance-anchors.md).
NUMPY=2.4.6; SAFETENSORS=0.8.0; GGUF=0.19.0; TOKENIZERS=0.23.3; PSUTIL=7.2.2
TORCH=2.15.0; TRANSFORMERS=5.23.0; PEFT=0.21.2
LLAMA_CPP_PYTHON=0.3.36; CMAKE=4.4.4; NINJA=1.13.2

mkdir -p "$VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || { echo "venv creation failed"; exit 1; }
LOGS="$VENV/logs"; mkdir -p "$LOGS"
PIP="$NICE $VENV/bin/pip --disable-pip-version-check"
STATUS="$VENV/peers.txt"; : > "$STATUS"
note() { echo "$*" | tee -a "$STATUS"; }
t0=$(date +%s)

$PIP install -q -U pip >"$LOGS/pip.log" 2>&1
# base: the converters and readers, plus deps shared by torch and llama-cpp-python so the
# two parallel installs below do not race on them.
if $PIP install "numpy==$NUMPY" "safetensors==$SAFETENSORS" "gguf==$GGUF" "tokenizers==$TOKENIZERS" \
     "psutil==$PSUTIL" "cmake==$CMAKE" "ninja==$NINJA" typing-extensions jinja2 diskcache filelock \
     fsspec sympy networkx >"$LOGS/base.log" 2>&1; then
  note "base: ok numpy==$NUMPY safetensors==$SAFETENSORS gguf==$GGUF tokenizers==$TOKENIZERS ($(( $(date +%s)-t0 ))s)"
else
  note "base: FAILED (see $LOGS/base.log)"; exit 1
fi

install_torch() {
  local s=$(date +%s) how=""
  # from PyPI only (the package registry): pulls CUDA runtime wheels (several GB) but runs on CPU
  if timeout 1200 $PIP install "torch==$TORCH" >"$LOGS/torch-pypi.log" 2>&1; then
    how="PyPI (with nvidia wheels)"
  fi
  if [ -n "$how" ] && $PIP install "transformers==$TRANSFORMERS" "peft==$PEFT" >"$LOGS/transformers.log" 2>&1 \
     && "$VENV/bin/python" -c "import torch, transformers, peft" 2>>"$LOGS/transformers.log"; then
    local sz; sz=$(du -sh "$VENV"/lib/python3*/site-packages/{torch,nvidia,triton} 2>/dev/null | awk '{printf "%s %s; ", $1, $2}')
    note "transformers: ok torch==$TORCH via $how, transformers==$TRANSFORMERS, peft==$PEFT ($(( $(date +%s)-s ))s; sizes: $sz)"
  else
    note "transformers: FAILED (torch via '${how:-none}'; see $LOGS/torch-*.log, $LOGS/transformers.log)"
  fi
}

install_llamacpp() {
  local s=$(date +%s)
  # Compiles llama.cpp from source (cmake from the venv), tuned to this CPU's SIMD (AVX2, FMA, F16C,
  # AVX-512 and its VNNI/BF16/VBMI when present) but without AMX: GGML_NATIVE=ON also builds the AMX
  # kernels on AMX CPUs, and in this VM every quantized (Q8_0, Q4_1) model then segfaulted on its
  # first eval (2026-11-30). LLAVA_BUILD=OFF skips the multimodal library (mtmd, ~50 files).
  local flags="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" f
  for f in avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512 avx512_vnni:AVX512_VNNI \
           avx512_bf16:AVX512_BF16 avx512vbmi:AVX512_VBMI; do
    grep -qw "${f%%:*}" /proc/cpuinfo && flags="$flags -DGGML_${f##*:}=ON"
  done
  note "llama.cpp: CMAKE_ARGS=$flags"
  if PATH="$VENV/bin:$PATH" CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL=2 \
       $PIP install --no-cache-dir "llama-cpp-python==$LLAMA_CPP_PYTHON" >"$LOGS/llama-cpp-python.log" 2>&1 \
     && "$VENV/bin/python" -c "import llama_cpp" 2>>"$LOGS/llama-cpp-python.log"; then
    note "llama.cpp: ok llama-cpp-python==$LLAMA_CPP_PYTHON ($(( $(date +%s)-s ))s)"
  else
    note "llama.cpp: FAILED (see $LOGS/llama-cpp-python.log)"
  fi
}

if [ "$PARALLEL" = 1 ]; then
  install_torch & p1=$!
  install_llamacpp & p2=$!
  wait $p1; wait $p2
else
  install_torch; install_llamacpp
fi
note "total: $(( $(date +%s)-t0 ))s; venv size $(du -sh "$VENV" | cut -f1)"
echo "--- $STATUS"; cat "$STATUS"
