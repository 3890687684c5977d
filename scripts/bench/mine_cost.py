#!/usr/bin/env python3
"""Cost per decision of self-rewarding mining (psrlm-design.md §6): runs `umi reward pairs` on the
first trajectories of a split, in one mode, and prints one JSON line for scripts/bench/run.sh.

  mine_cost.py UMI OUT_DIR MODE [umi reward pairs arguments...]

MODE is `batched` (umi's default: the w candidates decoded as one batch, role prompts through the
prefix cache) or `plain` (`--plain`: every candidate decoded alone, every prompt prefilled whole,
the path before batched and prefix-shared generation). The line carries the mean prefilled,
cached and generated tokens, judge calls and seconds per decision point from the run's
report.json, and a digest of each point's candidates so that two modes can be checked to have
sampled the same steps.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in ("batched", "plain"):
        sys.exit(__doc__)
    umi, out, mode, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: a resumed one would skip the work
    cmd = [umi, "reward", "pairs", "--out", out, *extra] + (["--plain"] if mode == "plain" else [])
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    report = json.load(open(os.path.join(out, "report.json")))
    settings = json.load(open(os.path.join(out, "settings.json")))
    cost = report.get("mean_cost_per_point")
    if not cost:
        sys.exit(f"{out}/report.json has no mean_cost_per_point: is {umi} older than the cost counters?")
    digests = []
    for line in open(os.path.join(out, "search.jsonl")):
        if line.strip():
            rec = json.loads(line)
            digests.append([rec["id"], hashlib.sha256("\x00".join(rec["candidates"]).encode()).hexdigest()[:16]])
    print(json.dumps({
        "system": "umi",
        "mode": mode,
        "data": settings["data"],
        "models": settings["models"],
        "width": settings["config"]["width"],
        "max_new_tokens": settings["config"]["max_new_tokens"],
        "points": report["points"],
        "pairs": report["pairs"],
        "prefilled_tokens": cost["prefilled_tokens"],
        "cached_tokens": cost["cached_tokens"],
        "generated_tokens": cost["generated_tokens"],
        "judge_calls": cost["judge_calls"],
        "seconds_per_point": cost["seconds"],
        "candidate_digests": digests,
    }))


if __name__ == "__main__":
    main()
