#!/usr/bin/env bash
# Runs umi's whole test suite: installs the default model if needed (scripts/setup.sh), then
# `cargo test --release --workspace` (burn is too slow unoptimised for model tests), then the web
# app in headless Chromium on WebGPU (tests/browser/run.sh).
#
# The wgpu test runs on any Vulkan adapter, Mesa's lavapipe included (Debian: mesa-vulkan-drivers).
# The browser test needs chromium, node, trunk 0.21.14 and wasm-bindgen-cli 0.2.130 (.ci/run
# shows how to install them). UMI_REQUIRE_WEIGHTS=1 / UMI_REQUIRE_WGPU=1 / UMI_REQUIRE_BROWSER=1
# turn "skipped" into "failed" (CI sets all three). Arguments go to `cargo test` and skip the
# browser test (e.g. `scripts/test.sh --test training`), as UMI_SKIP_BROWSER=1 does.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --release --workspace --locked "$@"
if [ $# -eq 0 ] && [ "${UMI_SKIP_BROWSER:-0}" != 1 ]; then
  tests/browser/run.sh
fi
