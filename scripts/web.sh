#!/usr/bin/env bash
# The web app in one command: installs the default model and the pinned web build tools if
# needed, builds the app (trunk, offline), starts the demo tool server on 127.0.0.1:8080 (unless
# one is running) and serves the app on http://127.0.0.1:8000/ with the default model beside it.
# Open that URL in a browser with WebGPU (Chrome/Edge 113+, or Chromium with
# --enable-unsafe-webgpu), press "Load model", then "Run".
#
# On a fresh 2-core machine the first run takes about 25 minutes, measured 2026-12-01: trunk
# install ~9 min, wasm-bindgen-cli ~2.5 min, the release wasm build ~10 min, the demo tool server
# (the light umi-tools binary, not the whole CLI) ~1.5 min. Later runs start in seconds.
#
# Usage: scripts/web.sh [port]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${1:-8000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" TRUNK_SKIP_VERSION_CHECK=true
scripts/setup.sh
rustup target add wasm32-unknown-unknown >/dev/null
if ! trunk --version 2>/dev/null | grep -q "0.21.14"; then
  echo "web: installing trunk 0.21.14 (once, ~9 min)"
  cargo install trunk --version 0.21.14 --locked
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "0.2.130"; then
  echo "web: installing wasm-bindgen-cli 0.2.130 (once, ~3 min)"
  cargo install wasm-bindgen-cli --version 0.2.130
fi
cargo fetch --locked --target wasm32-unknown-unknown >/dev/null
echo "web: building the app (release wasm; ~10 min on 2 cores the first time)"
trunk build --release --offline
# The app's default model URL is models/SmolLM2-135M-Instruct.Q4_1.gguf, next to index.html.
mkdir -p dist/models
ln -sf "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" dist/models/
# the α-UMi adapters umi ships for it (agent/index.json), installed by the page on load
ln -sfn "$root/assets/agent" dist/agent

# the demo tools alone (umi-tools serve = umi tools serve), without compiling the models
cargo build --release --locked -p umi-tools --features server --bin umi-tools
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
if ! python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/tools', timeout=1)" 2>/dev/null; then
  "$CARGO_TARGET_DIR/release/umi-tools" serve --port 8080 \
    --cors-origin "http://127.0.0.1:$port" --cors-origin "http://localhost:$port" &
  pids+=($!)
fi
echo "web: serving http://127.0.0.1:$port/ (tools at http://127.0.0.1:8080/tools); Ctrl-C stops"
python3 -m http.server "$port" --bind 127.0.0.1 --directory dist
