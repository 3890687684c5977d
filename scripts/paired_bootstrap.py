#!/usr/bin/env python3
"""Paired comparison of two `umi eval live` runs on the same tasks (EVAL.md's "paired" numbers).

  python3 scripts/paired_bootstrap.py eval/live-b8-152/results.jsonl eval/live-b8-caller80/results.jsonl

Prints both pass rates over the task ids the runs share, the difference (second minus first) with
a 95 % bootstrap interval (10,000 resamples of the per-task differences, seed 0), the tasks gained
and lost, and the pass rates by task kind. Standard library only.
"""
import json
import random
import sys


def load(path):
    return {r["id"]: r for r in map(json.loads, open(path)) if r}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    ids = sorted(set(a) & set(b))
    if not ids:
        sys.exit("the two runs share no task id")
    n = len(ids)
    d = [int(b[i]["pass"]) - int(a[i]["pass"]) for i in ids]
    rng = random.Random(0)
    boots = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(10000))
    pa = sum(a[i]["pass"] for i in ids) / n
    pb = sum(b[i]["pass"] for i in ids) / n
    print(f"{n} tasks: {100 * pa:.1f} % -> {100 * pb:.1f} %, difference {100 * (pb - pa):+.1f} points, "
          f"95 % interval [{100 * boots[249]:+.1f}, {100 * boots[9749]:+.1f}]; {d.count(1)} gained, {d.count(-1)} lost")
    for kind in sorted({a[i]["kind"] for i in ids}):
        k = [i for i in ids if a[i]["kind"] == kind]
        print(f"  {kind}: {100 * sum(a[i]['pass'] for i in k) / len(k):.1f} -> "
              f"{100 * sum(b[i]['pass'] for i in k) / len(k):.1f} ({len(k)} tasks)")


if __name__ == "__main__":
    main()
