#!/usr/bin/env bash
# The `device` tool sends the whole working tree (tracked files, untracked files git does not
# ignore) with every call, at most 64 MiB together with what `carry` names. The tracked assets/
# (shipped adapters, fixtures) and eval/ (results) take ~50 MB of that, so the 93 MB model would
# need many calls. `on` takes every tracked top-level folder but scripts/ out of the index and
# ignores it locally (.git/info/exclude), so only scripts/ travels; `off` puts the index back from
# HEAD and removes those lines. Files on disk are never touched. Commit your work before `on`:
# `off` resets the index (staged changes are lost, the files' contents stay).
#
# Usage: scripts/gpu/slim_tree.sh on|off
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
begin="# umi slim_tree begin" end="# umi slim_tree end"  # gitignore has no trailing comments
case "${1:-}" in
  on)
    mkdir -p "$(dirname "$exclude")" && touch "$exclude"
    echo "$begin" >> "$exclude"
    git ls-files | cut -d/ -f1 | sort -u | while read -r top; do
      [ "$top" = scripts ] && continue
      git rm -r -q --cached -- "$top"
      echo "/$top" >> "$exclude"
    done
    echo "$end" >> "$exclude"
    echo "slim_tree: only scripts/ travels; $(git ls-files | wc -l) files tracked in the index"
    ;;
  off)
    git reset -q
    [ -f "$exclude" ] && sed -i "/^$begin\$/,/^$end\$/d" "$exclude"
    echo "slim_tree: index back from HEAD; $(git status --short | wc -l) changed paths"
    ;;
  *) echo "usage: scripts/gpu/slim_tree.sh on|off" >&2; exit 2 ;;
esac
