#!/usr/bin/env bash
# Packs what scripts/gpu/device_train.sh needs on the GPU machine (the `device` tool, one H200,
# at most 64 MiB per call with the working tree): a stripped, xz-compressed release `umi`, the
# training data of each job, the job list, and the default model (93 MB) cut into parts that fit
# beside the working tree, one folder per call, all under the git-ignored .gpu/.
#
# Usage: scripts/gpu/prepare.sh JOBS_FILE
#   JOBS_FILE: one job per line, `NAME ROLE DATA EPOCHS LR [OPTION=VALUE ...]` (DATA: α-UMi
#   trajectories JSON; ROLE and the options as scripts/gpu/device_train.sh says), e.g.
#     planner    planner    data/synth-mix/train.json        2 5e-4
#     caller     caller     data/synth-caller-mix/train.json 2 5e-4
#     tb-global  backbone   data/toolbench-glpft/train.json  2 5e-4 max_len=4096
#     tb-planner planner    data/toolbench-glpft/train.json  1 5e-4 max_len=4096 init=tb-global
#     tb-m1      planner    data/toolbench-glpft/train.json  1 5e-4 init=tb-global extra=data/eft-train/eft.jsonl
# The working tree travels with every call (~50 MB with assets/ and eval/): run
# `scripts/gpu/slim_tree.sh on` first so that the model fits in two calls, `off` afterwards.
# Then (scripts/gpu/README.md): one `run` per .gpu/partN (carry [".gpu/partN"], command
# `mkdir -p /tmp/umi && cp .gpu/partN/* /tmp/umi/`), back to back (the machine stays warm 30 s),
# then the last one carries .gpu/final (which may hold the last part too) and runs
# scripts/gpu/device_train.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
jobs_file="$(realpath "${1:?usage: scripts/gpu/prepare.sh JOBS_FILE (NAME ROLE DATA EPOCHS LR per line)}")"
cd "$root"
scripts/setup.sh >/dev/null
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --locked -p umi-cli
rm -rf .gpu && mkdir -p .gpu/final
strip -o .gpu/umi "$target/release/umi"
xz -T2 -6 -c .gpu/umi > .gpu/final/umi.xz && rm .gpu/umi
: > .gpu/final/jobs.txt
seen=" "
while read -r name role data epochs lr options; do
  [ -z "${name:-}" ] && continue
  case "$name" in \#*) continue ;; esac
  bad() { echo "prepare: $jobs_file: job $name: $1" >&2; exit 1; }
  [ -n "${lr:-}" ] || bad "a job is NAME ROLE DATA EPOCHS LR [OPTION=VALUE ...]"
  case "$role" in planner|caller|summarizer|backbone) ;; *) bad "unknown role $role" ;; esac
  [ -f "$data" ] || bad "$data not found"
  case "$seen" in *" $name "*) bad "a second job of that name" ;; esac
  packed_options=""
  for opt in ${options:-}; do
    case "$opt" in
      extra=*)
        extra="${opt#extra=}"
        [ -f "$extra" ] || bad "$opt: $extra not found"
        packed_extra="$(echo "$extra" | tr '/' '_' | sed -e 's/^[._]*//' -e 's/\.jsonl$//').jsonl.xz"
        [ -f ".gpu/final/$packed_extra" ] || xz -T2 -9 -c "$extra" > ".gpu/final/$packed_extra"
        packed_options="$packed_options extra=$packed_extra"
        continue ;;
      init=*) case "$seen" in *" ${opt#init=} "*) ;; *) bad "$opt: no earlier job of that name" ;; esac ;;
      split=all|split=train|split=dev) ;;
      max_len=*|budget=*|batch=*) [[ "${opt#*=}" =~ ^[0-9]+$ ]] || bad "$opt: not a number" ;;
      *) bad "unknown option $opt (init=JOB, split=all|train|dev, max_len=N, budget=S, batch=N, extra=FILE)" ;;
    esac
    packed_options="$packed_options $opt"
  done
  seen="$seen$name "
  packed="$(echo "$data" | tr '/' '_' | sed -e 's/^[._]*//' -e 's/\.json$//').json.xz"
  [ -f ".gpu/final/$packed" ] || xz -T2 -9 -c "$data" > ".gpu/final/$packed"
  echo "$name $role $packed $epochs $lr$packed_options" >> .gpu/final/jobs.txt
done < "$jobs_file"
gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum "$gguf" | cut -d' ' -f1 > .gpu/final/model.sha256
# what travels besides a part: the tracked tree and untracked files git does not ignore
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
room=$(( 64 * 1024 * 1024 - tree - 2 * 1024 * 1024 ))
[ "$room" -gt $(( 8 * 1024 * 1024 )) ] || { echo "prepare: the working tree ($tree bytes) leaves no room for parts" >&2; exit 1; }
split -b "$room" -d -a 1 "$gguf" .gpu/gguf-part-
# the last part rides with the final call when both fit
last=$(ls .gpu/gguf-part-* | tail -1)
if [ $(( $(du -cb .gpu/final/* | tail -1 | cut -f1) + $(stat -c %s "$last") )) -le "$room" ]; then
  mv "$last" .gpu/final/
fi
n=0
for f in .gpu/gguf-part-*; do
  mkdir -p ".gpu/part$n" && mv "$f" ".gpu/part$n/"
  n=$((n + 1))
done
final=$(du -cb .gpu/final/* | tail -1 | cut -f1)
echo "prepare: working tree $tree bytes; $n model parts of at most $room bytes; final payload $final bytes"
cat .gpu/final/jobs.txt
ls -la .gpu/*
