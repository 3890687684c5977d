#!/usr/bin/env bash
# The web app in a real browser: builds the app with trunk, makes the memorised tiny model
# (tests/browser/make_fixture.rs), serves both and the demo tool server on loopback, and drives
# headless Chromium (WebGPU on its software adapter): load the model, reload and load it again
# from the Cache API, then a whole α-UMi run with tests/browser/app.test.mjs (prefill progress,
# Stop between prefill chunks, the Storage section, and an offline visit with the page server
# stopped, served by the service worker); then a second page fine-tunes the planner with LoRA through the
# "Fine-tune" panel, first step-level DPO of its shipped adapter on imported preference pairs, then
# SFT, and compares the losses with the native ones make_fixture.rs wrote. Screenshots land in $UMI_BROWSER_OUT (default
# $CARGO_TARGET_DIR/browser-test).
#
# Needs: chromium, node + npm, trunk 0.21.14 and wasm-bindgen-cli 0.2.130 on PATH (.ci/run
# installs them; see README). Without them it skips, unless UMI_REQUIRE_BROWSER=1 (CI sets it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" TRUNK_SKIP_VERSION_CHECK=true
out="${UMI_BROWSER_OUT:-$CARGO_TARGET_DIR/browser-test}"

missing=()
command -v chromium >/dev/null || missing+=("chromium (apt install chromium)")
command -v node >/dev/null || missing+=("node")
trunk --version 2>/dev/null | grep -q "0.21.14" || missing+=("trunk 0.21.14 (cargo install trunk --version 0.21.14 --locked)")
wasm-bindgen --version 2>/dev/null | grep -q "0.2.130" || missing+=("wasm-bindgen 0.2.130 (cargo install wasm-bindgen-cli --version 0.2.130)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'browser test: missing %s\n' "${missing[@]}" >&2
  if [ "${UMI_REQUIRE_BROWSER:-0}" = 1 ]; then exit 1; fi
  echo "browser test: skipped" >&2
  exit 0
fi
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/setup.sh
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)

rm -rf "$out" && mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

echo "== native build (umi, make-browser-fixture)"
cargo build --release --locked -p umi-cli -p umi-tests --bin umi --bin make-browser-fixture

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 100); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "browser test: $1 did not come up" >&2; return 1
}

tools_port="$(free_port)"
app_port="$(free_port)"
"$CARGO_TARGET_DIR/release/umi" tools serve --port "$tools_port" --state "$out/tool-state.json" \
  --cors-origin "http://127.0.0.1:$app_port" >"$out/tools.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$tools_port/tools"

echo "== fixture: tiny Llama memorising one α-UMi run against the demo tools"
"$CARGO_TARGET_DIR/release/make-browser-fixture" --tools "http://127.0.0.1:$tools_port" \
  --tokenizer-gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$out/fixture"

echo "== web app (trunk build --release --offline)"
cargo fetch --locked --target wasm32-unknown-unknown >/dev/null
# UMI_WASM_TARGET_DIR: a separate target dir for the wasm build (default: the shared one)
CARGO_TARGET_DIR="${UMI_WASM_TARGET_DIR:-$CARGO_TARGET_DIR}" trunk build --release --offline --dist "$out/dist"
cp -r "$out/fixture" "$out/dist/fixture"
# the fixture's "shipped agent" (fresh adapters, see make_fixture.rs) where the app looks for one
cp -r "$out/fixture/agent" "$out/dist/agent"

serve_app() {
  python3 -m http.server "$app_port" --bind 127.0.0.1 --directory "$out/dist" >>"$out/http.log" 2>&1 &
  app_pid=$!
  pids+=("$app_pid")
  wait_http "http://127.0.0.1:$app_port/"
}
serve_app

echo "== headless Chromium (WebGPU on SwiftShader)"
query="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["query"])' "$out/fixture/scenario.json")"
APP_URL="http://127.0.0.1:$app_port/" \
MODEL_URL="http://127.0.0.1:$app_port/fixture" \
TOOLS_URL="http://127.0.0.1:$tools_port" \
QUERY="$query" \
SCENARIO="$out/fixture/scenario.json" \
CHECK_CACHE=1 \
EXPECT_STATUS="α-UMi agent: shipped adapters from agent/fixture" \
SHOT="$out/app-mid-run.png" SHOT_END="$out/app-done.png" SHOT_LOADED="$out/app-loaded.png" SHOT_PREFILL="$out/app-prefill.png" \
APP_SERVER_PID="$app_pid" IMPORT_DIR="$out/fixture/import" AGENT_DIR="$out/fixture/agent/fixture" \
TIMEOUT_MS="${UMI_BROWSER_TIMEOUT_MS:-900000}" \
  node tests/browser/app.test.mjs
serve_app # the run stopped it to check the offline visit

echo "== headless Chromium: LoRA fine-tuning of the planner in the page (DPO, then SFT), against native losses"
APP_URL="http://127.0.0.1:$app_port/" \
MODEL_URL="http://127.0.0.1:$app_port/fixture" \
TRAIN=1 \
TRAIN_DATA="$out/fixture/train.json" \
TRAIN_REFERENCE="$out/fixture/train_reference.json" \
DPO_PAIRS="$out/fixture/dpo_pairs.jsonl" \
DPO_REFERENCE="$out/fixture/dpo_reference.json" \
SHOT_TRAIN="$out/app-fine-tuning.png" SHOT_END="$out/app-fine-tuned.png" SHOT_DPO="$out/app-dpo.png" \
TIMEOUT_MS="${UMI_BROWSER_TIMEOUT_MS:-900000}" \
  node tests/browser/app.test.mjs
echo "browser test: passed (screenshots in $out)"
