#!/usr/bin/env bash
# Writes the ToolBench-side GLPFT training data (EVAL.md's static evaluation: α-UMi against the
# single-LLM baseline on the 190 dev decisions) as one α-UMi conversation file:
#   data/toolbench-glpft/train.json
# from everything in ../shared/data that umi's readers turn into α-UMi conversations, the dev
# split kept out:
#   - the OOD train split: out_of_domain_train300.json minus every 6th trajectory (250; the 50
#     others are `umi eval`'s dev split)
#   - the α-UMi repository's train example (raw_data_stage_2.json, 20 ToolBench records)
#   - ToolBench's raw answer files (toolbench-data-example/answer, 13 usable of 15)
#   - API-Bank's level-3 training dialogues (lv3-train.json, 338)
# and checks that no training instruction is a dev instruction. Each source goes through
# `umi data prepare` (its conversations.json); the merge keeps their order.
#
# Usage: scripts/gpu/toolbench_data.sh [UMI_BINARY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
umi="${1:-${CARGO_TARGET_DIR:-$root/target}/release/umi}"
[ -x "$umi" ] || { echo "toolbench_data: no umi binary at $umi (cargo build --release -p umi-cli)" >&2; exit 1; }
shared=../shared/data
out=data/toolbench-glpft
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$umi" data prepare --input "$shared/alpha-umi-toolbench/ood-train/out_of_domain_train300.json" \
  --split train --out "$work/ood"
"$umi" data prepare --input "$shared/alpha-umi-toolbench/ood-train/out_of_domain_train300.json" \
  --split dev --out "$work/dev"
"$umi" data prepare --input "$shared/alpha-umi-toolbench/train-example/raw_data/raw_data_stage_2.json" \
  --out "$work/example"
"$umi" data prepare --format toolbench --input "$shared/toolbench-data-example/answer" --out "$work/answers"
"$umi" data prepare --format api-bank --input "$shared/api-bank/training-data/lv3-train.json" \
  --out "$work/api-bank"
mkdir -p "$out"
python3 - "$work" "$out/train.json" <<'EOF'
import json, sys
work, out = sys.argv[1], sys.argv[2]
dev = {c["instruction"].strip() for c in json.load(open(f"{work}/dev/conversations.json"))}
merged = []
for source in ("ood", "example", "answers", "api-bank"):
    convs = json.load(open(f"{work}/{source}/conversations.json"))
    leaked = [c["instruction"][:80] for c in convs if c["instruction"].strip() in dev]
    if leaked:
        sys.exit(f"toolbench_data: {source} holds dev instructions: {leaked[:3]}")
    print(f"{source}: {len(convs)} conversations")
    merged += convs
json.dump(merged, open(out, "w"), indent=2, ensure_ascii=False)
print(f"wrote {len(merged)} conversations to {out}")
EOF
