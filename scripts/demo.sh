#!/usr/bin/env bash
# The main job in one command: installs the default model if needed, builds umi, starts the demo
# tool server on 127.0.0.1:8080 (unless one is already running there), and runs the α-UMi agent
# umi ships (SmolLM2-135M-Instruct with the planner, caller and summarizer LoRA adapters of
# assets/agent/; add --zero-shot for the bare model) on a query, printing the trajectory.
#
# Usage: scripts/demo.sh ["your query"] [extra `umi run` flags...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
query="${1:-What is 100 USD in EUR?}"
shift || true
scripts/setup.sh
cargo build --release -p umi-cli
umi="${CARGO_TARGET_DIR:-$root/target}/release/umi"
server_pid=""
if ! python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/tools', timeout=1)" 2>/dev/null; then
  "$umi" tools serve --port 8080 &
  server_pid=$!
  trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null' EXIT
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/tools', timeout=1)" 2>/dev/null && break
    sleep 0.1
  done
fi
"$umi" run --query "$query" --tools http://127.0.0.1:8080 "${@:---max-steps=6}"
