#!/usr/bin/env bash
# Runs umi's whole test suite: installs the default model if needed (scripts/setup.sh), then
# `cargo test --release --workspace` (burn is too slow unoptimised for model tests).
#
# The wgpu test runs on any Vulkan adapter, Mesa's lavapipe included (Debian: mesa-vulkan-drivers).
# UMI_REQUIRE_WEIGHTS=1 / UMI_REQUIRE_WGPU=1 turn "skipped" into "failed" (CI sets both).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
exec cargo test --release --workspace --locked "$@"
