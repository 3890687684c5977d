#!/usr/bin/env python3
"""Collect benchmark JSON lines into results.json, and render results.json as BENCHMARKS.md.

  render.py --collect LINES.jsonl [--umi PATH] [--venv DIR] > results.json
  render.py results.json [--train train_results.json] > BENCHMARKS.md

results.json holds generation runs (`umi bench`, peer_transformers.py, peer_llamacpp.py);
train_results.json LoRA training runs (`umi bench --train`, peer_peft_train.py), each with its own
date, machine and versions, as run.sh measures them separately (TASKS).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu, flags = "?", ""
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name") and cpu == "?":
                cpu = l.split(":", 1)[1].strip()
            if l.startswith("flags") and not flags:
                flags = l
    except OSError:
        pass
    mem = "?"
    try:
        for l in open("/proc/meminfo"):
            if l.startswith("MemTotal"):
                mem = f"{int(l.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f" {f}" in flags]
    return {"nproc": os.cpu_count(), "cpu": cpu, "simd": simd, "memory": mem,
            "kernel": platform.release(), "loadavg_at_start": (float(os.environ["BENCH_LOADAVG_START"])
                                                         if os.environ.get("BENCH_LOADAVG_START") else None),
            "loadavg_at_end": os.getloadavg()[0], "steal_percent": steal_percent()}


def steal_percent():
    """Share of CPU time stolen by the hypervisor since run.sh started (/proc/stat's steal
    column over user..steal), or None without the start counters or /proc/stat."""
    start = os.environ.get("BENCH_PROC_STAT_START", "").split()
    try:
        end = open("/proc/stat").readline().split()
    except OSError:
        return None
    if len(start) < 9 or len(end) < 9 or start[0] != "cpu" or end[0] != "cpu":
        return None
    delta = [int(b) - int(a) for a, b in zip(start[1:9], end[1:9])]
    total = sum(delta)
    return round(100.0 * delta[7] / total, 1) if total > 0 else None


def versions(umi, venv):
    v = {"python": platform.python_version()}
    pkgs = ["numpy", "safetensors", "gguf", "torch", "transformers", "peft", "llama_cpp_python"]
    try:
        import importlib.metadata as md
        for p in pkgs:
            try:
                v[p] = md.version(p.replace("_", "-"))
            except md.PackageNotFoundError:
                pass
    except Exception:
        pass
    rev = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    dirty = sh("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")
    v["umi_git"] = rev + ("+dirty" if dirty else "") if rev else "?"
    if umi and os.path.exists(umi):
        v["umi_version"] = sh(umi, "--version") or "?"
    return v


# Fields of a result line that are speeds (the median over rounds is kept) and memory (the largest).
SPEEDS = ("prefill_tok_s", "decode_tok_s", "sampled_one_stream_tok_s", "sampled_batch_tok_s", "train_tok_s")
MEMORY = ("peak_rss_mib",)


def merge_rounds(results):
    """One result per (group, system, precision, model, shape) from lines measured in several rounds
    (run.sh's ROUNDS: every system once per round, so that a change in the machine's speed during the run
    reaches umi and its peers alike): the median of each speed, the largest peak RSS, `rounds` = how many."""
    merged, order = {}, []
    for r in results:
        key = json.dumps({k: v for k, v in r.items() if k not in SPEEDS + MEMORY}, sort_keys=True)
        if key not in merged:
            merged[key] = []
            order.append(key)
        merged[key].append(r)
    out = []
    for key in order:
        rows = merged[key]
        r = dict(rows[0])
        for f in SPEEDS:
            if len(rows) > 1 and all(x.get(f) is not None for x in rows):
                r[f + "_by_round"] = [x[f] for x in rows]  # in round order
            values = sorted(x[f] for x in rows if x.get(f) is not None)
            if values:
                n = len(values)
                r[f] = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
        for f in MEMORY:
            values = [x[f] for x in rows if x.get(f) is not None]
            if values:
                r[f] = max(values)
        r["rounds"] = len(rows)
        out.append(r)
    return out


def collect(lines_path, umi, venv):
    results = []
    for l in open(lines_path):
        l = l.strip()
        if l:
            results.append(json.loads(l))
    results = merge_rounds(results)
    rounds = max((r["rounds"] for r in results), default=1)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions(umi, venv),
            "shape": {"batch": 1, "prompt_tokens": 512, "new_tokens": 128, "threads": 2, "runs": 3,
                      "rounds": rounds, "runs_per_round": int(os.environ.get("BENCH_RUNS_PER_ROUND", "3")),
                      "tiny_rounds": int(os.environ.get("BENCH_TINY_ROUNDS", "1")),
                      "tiny_runs": int(os.environ.get("BENCH_TINY_RUNS", "3")),
                      "stat": "median"}}
    json.dump({"meta": meta, "results": results}, sys.stdout, indent=2)
    print()


def fmt(x, nd=1):
    return "—" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return "—" if not a or not b else f"{a / b:.2f}×"


def within_rounds(ours, theirs, prefix=""):
    """` (a, b, c)`: `ours[i] / theirs[i]` for each round, where both ran on the machine as it was then;
    empty unless both were measured in the same rounds."""
    if not ours or not theirs or len(ours) != len(theirs):
        return ""
    return " (" + prefix + ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs)) + ")"


def is_umi(r):
    return r["system"].lower().startswith("umi")


def machine_lines(w, meta):
    m, v = meta["machine"], meta["versions"]
    w(f"**Machine:** {m['nproc']} CPUs, {m['cpu']} ({', '.join(m.get('simd', [])) or 'no AVX flags seen'}), "
      f"{m['memory']} RAM, Linux {m['kernel']}; load average {fmt(m.get('loadavg_at_start'), 2)} at the "
      f"start, {m.get('loadavg_at_end', 0):.2f} at the end"
      + (f"; the hypervisor took {m['steal_percent']:.1f} % of the CPU time during the run (steal)"
         if m.get("steal_percent") is not None else "") + ".\n")
    if (m.get("steal_percent") or 0) > 5:
        w(f"**Warning:** the virtual machine lost {m['steal_percent']:.1f} % of its CPU time to other "
          f"guests of its host during this run (steal time), unevenly over time: runs measured at "
          f"different moments got different shares of the cores, so the ratios below are noisy too. "
          f"Re-run when the host is quieter before quoting them.\n")
    if (m.get("loadavg_at_start") or 0) > 0.5:
        w(f"**Warning:** the machine was not idle when this run started (load average "
          f"{m['loadavg_at_start']:.2f} on {m['nproc']} CPUs): other processes competed for the cores, so every "
          f"figure below is low and noisy. Re-run on an idle machine before quoting them.\n")
    vs = ", ".join(f"{k} {val}" for k, val in v.items())
    w(f"**Versions:** {vs}.\n")


def model_files(rows):
    return ", ".join(sorted({f"`{os.path.relpath(r['model'], ROOT) if os.path.isabs(r['model']) else r['model']}`"
                             for r in rows}))


def tables(w, results, group_of, level, columns, row):
    """One table per group of `results` (in order of first appearance): a header of `columns` after
    `system`, one row per result (`row(result, umi_result_or_None)` gives the cells after the system, umi in
    bold), the model files, and a line when umi has no result."""
    groups = []
    for r in results:
        if group_of(r) not in groups:
            groups.append(group_of(r))
    for g in groups:
        rows = [r for r in results if group_of(r) == g]
        umis = [r for r in rows if is_umi(r)]
        umi = umis[0] if umis else None
        w(f"{level} {g}\n")
        w(f"| system | {columns} |")
        w("|---|---|" + "---:|" * (columns.count("|")))
        for r in rows:
            # a peer is compared with umi at its own precision when umi ran at it (f32, Q8_0),
            # else with umi's first row
            same = next((u for u in umis if u.get("precision") == r.get("precision")), umi)
            name = f"**{r['system']}**" if r in umis else r["system"]
            w(f"| {name} | {row(r, r if r in umis else same)} |")
        w(f"\nModel files: {model_files(rows)}.")
        if umi is None:
            w("\numi: no result in this run (binary missing or failed).")
        w("")


def render_train(w, path):
    d = json.load(open(path))
    meta, results = d["meta"], d["results"]
    w("## LoRA training\n")
    w(f"Measured {meta['date']} by `TASKS=train scripts/bench/run.sh`: one optimizer step = forward, backward, "
      "gradient clipping at 1.0 and AdamW (lr 1e-4) over one batch whose every position is a label (row r, token "
      "i = ((i + r)·7919 + 13) mod vocab); LoRA r 8, α 16, dropout 0 on q/k/v/o/gate/up/down projections; f32 "
      "weights; 2 threads; one warm-up step, then the median of 3 steps"
      + (f"; the median of {meta['shape']['rounds']} rounds, in each of which umi and the peer ran once in turn at "
         "each shape (a process each), so that a change in the shared machine's speed reaches both"
         if meta.get("shape", {}).get("rounds", 1) > 1 else "")
      + ". train tok/s = batch × sequence length ÷ "
      "step time. umi loads the Q4_1 GGUF dequantised to f32, the peer the f32 Hugging Face folder made from it (the "
      "same values: both report the same first loss). Peak RSS is the whole process, model loading included. The ratio is umi ÷ peer (above 1 means "
      "umi is faster or, for memory, uses more).\n")
    machine_lines(w, meta)

    def train_row(r, umi):
        rt = rm = "—"
        if umi is not None and r is not umi:
            rt = ratio(umi["train_tok_s"], r["train_tok_s"])
            rt += within_rounds(umi.get("train_tok_s_by_round"), r.get("train_tok_s_by_round"), "rounds ")
            rm = ratio(umi.get("peak_rss_mib"), r.get("peak_rss_mib"))
        return (f"{r.get('precision', '?')} | {r['batch_size']} × {r['seq_len']} | {fmt(r['train_tok_s'])} | "
                f"{fmt(r.get('peak_rss_mib'), 0)} | {rt} | {rm}")

    tables(w, results, lambda r: r.get("group"), "###",
           "precision | batch × seq | train tok/s | peak RSS MiB | umi/peer tok/s | umi/peer RSS", train_row)
    if any(r.get("train_tok_s_by_round") for r in results):
        w("The ratio is that of the medians over rounds; in brackets, umi ÷ peer within each round.\n")


def render_mine(w, path):
    d = json.load(open(path))
    meta, results = d["meta"], d["results"]
    if not results:
        return
    first = results[0]
    w("## Cost per decision: self-rewarding mining (umi alone)\n")
    w(f"Measured {meta['date']} by `TASKS=mine scripts/bench/run.sh`: `umi reward pairs` (psrlm-design.md §2.3–2.6: "
      f"at each gold planner decision point, w = {first['width']} candidates sampled at temperature 0.5, top-p 0.95, "
      f"at most {first['max_new_tokens']} new tokens each, then every ordered pair of distinct candidates judged in "
      f"the verdict format, read from the logits) on the first decision points of `{os.path.relpath(first['data'], ROOT) if os.path.isabs(first['data']) else first['data']}`, "
      f"model: {first['models']}; 2 threads. *batched* is umi's path (the candidates decoded as one batch, every "
      "prompt through the role's prefix cache, so the tool documentation and history are prefilled once); *plain* "
      "(`--plain`) decodes each candidate alone and prefills every prompt whole, the path before batched and "
      "prefix-shared generation. Token counts are means per decision point as the model ran them (a prompt shared "
      "by a batch counts once); psrlm-design.md §6.1 predicted 690 generated and about 10,900 prefilled tokens with "
      "prefix sharing, about 50,000 without, on the ToolBench train split.\n")
    machine_lines(w, meta)
    w("| mode | points | prefilled tokens | from the prefix cache | generated tokens | judge calls | s per decision | decisions per hour | time ÷ plain |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    plain = next((r for r in results if r["mode"] == "plain"), None)
    for r in results:
        sp = r["seconds_per_point"]
        w(f"| {r['mode']} | {r['points']} | {fmt(r['prefilled_tokens'], 0)} | {fmt(r['cached_tokens'], 0)} | "
          f"{fmt(r['generated_tokens'], 0)} | {fmt(r['judge_calls'])} | {fmt(sp)} | {fmt(3600 / sp if sp else None, 0)} | "
          f"{ratio(sp, plain['seconds_per_point']) if plain else '—'} |")
    batched = next((r for r in results if r["mode"] == "batched"), None)
    if plain and batched:
        a, b = dict(map(tuple, plain["candidate_digests"])), dict(map(tuple, batched["candidate_digests"]))
        same = sum(1 for k in a if b.get(k) == a[k])
        w(f"\nThe two modes sampled identical candidates at {same} of {len(a)} decision points (sampled draws may "
          "differ where float rounding of the shared-prefix attention moves a draw; greedy candidates are tested "
          "equal).")
    w("")


def render_gpu(w, path):
    """The GPU section from scripts/bench/gpu.sh's JSON lines (a meta line, then labelled results)."""
    rows = [json.loads(l) for l in open(path) if l.strip()]
    meta = next((r["meta"] for r in rows if "meta" in r), {})
    by = {r["label"]: r for r in rows if "label" in r}
    w("## GPU: umi wgpu vs PyTorch CUDA\n")
    w(f"Measured {meta.get('date', '?')} on the GPU machine ({meta.get('gpu', '?')}) by `scripts/bench/gpu.sh` "
      f"(umi at {meta.get('umi_commit', '?')}): random-weight models of each shape (`make_random_llama.py`, "
      "f16 files, f32 in memory unless marked bf16), a 512-token prompt, 128 greedy new tokens, median of 3 runs; "
      "PyTorch runs transformers' eager loop (one Python call per token). umi's *first run* is a fresh process's "
      "single run (shaders compiled and tuned on the way: what a person meets on the first query); *warm* is a "
      "second process. Ratios are umi warm ÷ peer.\n")
    for model, prefix in (("SmolLM2-135M shape", "smollm2"), ("TinyLlama-1.1B shape", "tinyllama")):
        umi = by.get(f"umi-{prefix}-warm")
        present = [k for k in (f"umi-{prefix}-first", f"umi-{prefix}-warm", f"torch-{prefix}-f32",
                               f"torch-{prefix}-bf16") if k in by]
        if not present:
            continue
        w(f"### {model}\n")
        w("| system | run | precision | prefill tok/s | decode tok/s | umi/peer prefill | umi/peer decode |")
        w("|---|---|---|---:|---:|---:|---:|")
        for k in present:
            r = by[k]
            run = "first run" if k.endswith("-first") else "warm"
            rp = rd = "—"
            if umi is not None and not is_umi(r):
                rp, rd = ratio(umi["prefill_tok_s"], r["prefill_tok_s"]), ratio(umi["decode_tok_s"], r["decode_tok_s"])
            w(f"| {r['system']} | {run} | {r.get('precision', '?')} | {fmt(r['prefill_tok_s'])} | "
              f"{fmt(r['decode_tok_s'], 2)} | {rp} | {rd} |")
        w("")
        umi_t, peer_t = by.get(f"umi-{prefix}-train"), by.get(f"peft-{prefix}-train")
        if umi_t and peer_t:
            w(f"LoRA training, {umi_t['batch_size']} × {umi_t['seq_len']} tokens per step (r 8 on all seven "
              f"projections, AdamW, f32): umi {fmt(umi_t['train_tok_s'])} tok/s, {peer_t['system']} "
              f"{fmt(peer_t['train_tok_s'])} tok/s: **{ratio(umi_t['train_tok_s'], peer_t['train_tok_s'])}**.\n")
        # the same build without burn's kernel fusion, when gpu.sh was given one
        nf, nf_t = by.get(f"umi-nofusion-{prefix}-warm"), by.get(f"umi-nofusion-{prefix}-train")
        if umi and nf:
            line = (f"Kernel fusion (umi's default build) against the same commit built without it, warm: prefill "
                    f"{fmt(nf['prefill_tok_s'])} → {fmt(umi['prefill_tok_s'])} tok/s "
                    f"({ratio(umi['prefill_tok_s'], nf['prefill_tok_s'])}), decode {fmt(nf['decode_tok_s'], 2)} → "
                    f"{fmt(umi['decode_tok_s'], 2)} ({ratio(umi['decode_tok_s'], nf['decode_tok_s'])})")
            if umi_t and nf_t:
                line += (f", LoRA training {fmt(nf_t['train_tok_s'])} → {fmt(umi_t['train_tok_s'])} tok/s "
                         f"({ratio(umi_t['train_tok_s'], nf_t['train_tok_s'])})")
            w(line + ".\n")


def render(path, train_path=None, mine_path=None, gpu_path=None):
    d = json.load(open(path))
    meta, results = d["meta"], d["results"]
    out = []
    w = out.append
    w("# Benchmarks: umi vs peers (CPU; the GPU machine at the end)\n")
    shape = meta["shape"]
    if shape.get("rounds", 1) > 1:
        how = (f"SmolLM2: the median of {shape['rounds']} rounds, in each of which every system ran once in turn (a "
               f"process each, the median of its {shape.get('runs_per_round', 3)} runs), so that a change in the "
               f"machine's speed during the run reaches umi and its peers alike; TinyLlama: "
               + (f"the median of {shape['tiny_rounds']} rounds, in each of which umi and llama.cpp ran in turn "
                  f"at each precision (the median of {shape.get('tiny_runs', shape['runs'])} runs each), transformers "
                  f"once" if shape.get("tiny_rounds", 1) > 1 else
                  f"one process each, the median of {shape.get('tiny_runs', shape['runs'])} runs")
               + "; in brackets after a decode ratio, umi ÷ peer within each round")
    else:
        how = f"median of {shape['runs']} runs"
    w(f"Measured {meta['date']} by `scripts/bench/run.sh`: batch 1, a {meta['shape']['prompt_tokens']}-token prompt "
      f"(prefill) then {meta['shape']['new_tokens']} greedy new tokens (decode, no EOS stop), "
      f"{meta['shape']['threads']} threads, {how}; prompt token i = "
      f"(i·7919 + 13) mod vocab. Same shapes as `shared/docs/performance-anchors.md`. Peak RSS is the whole process "
      f"(ru_maxrss), model loading included. Ratios are umi ÷ peer (above 1 means umi is faster). "
      f"llama.cpp caches keys and values in f16 at every precision, umi in f16 for its quantized rows (Q8_0, "
      f"Q4_1) and in f32 for f32. The 2,048-token group is the "
      f"length of α-UMi's ToolBench prompts (1.2k–4k tokens); llama.cpp runs there with and without flash "
      f"attention.\n")
    machine_lines(w, meta)

    def generate_row(r, umi):
        rp = rd = "—"
        if umi is not None and r is not umi:
            rp, rd = ratio(umi["prefill_tok_s"], r["prefill_tok_s"]), ratio(umi["decode_tok_s"], r["decode_tok_s"])
            rd += within_rounds(umi.get("decode_tok_s_by_round"), r.get("decode_tok_s_by_round"))
        return (f"{r.get('precision', '?')} | {fmt(r['prefill_tok_s'])} | {fmt(r['decode_tok_s'], 2)} | "
                f"{fmt(r.get('peak_rss_mib'), 0)} | {rp} | {rd}")

    tables(w, results, lambda r: r.get("group", r.get("model")), "##",
           "precision | prefill tok/s | decode tok/s | peak RSS MiB | umi/peer prefill | umi/peer decode", generate_row)

    batched = [r for r in results if is_umi(r) and r.get("samples")]
    if batched:
        w("## Batched sampling (umi alone)\n")
        w("The same prompt continued by several sampled sequences decoded as one batch (temperature 0.5, "
          "top-p 0.95, the self-rewarding settings; the prompt prefilled once and its keys and values shared), "
          f"against one sampled stream in the same run; {meta['shape']['new_tokens']} tokens per sequence, "
          "EOS ignored. Target: 6 sequences ≥ 4× the tokens/s of one.\n")
        w("| model | precision | sequences | one stream tok/s | batch tok/s (all sequences) | batch ÷ one stream |")
        w("|---|---|---:|---:|---:|---:|")
        for r in batched:
            # one stream and the batch ran back to back in each round's process
            within = within_rounds(r.get("sampled_batch_tok_s_by_round"), r.get("sampled_one_stream_tok_s_by_round"))
            w(f"| {r.get('group', r.get('model'))} | {r.get('precision', '?')} | {r['samples']} | "
              f"{fmt(r['sampled_one_stream_tok_s'])} | {fmt(r['sampled_batch_tok_s'])} | "
              f"{ratio(r['sampled_batch_tok_s'], r['sampled_one_stream_tok_s'])}{within} |")
        if any(r.get("sampled_batch_tok_s_by_round") for r in batched):
            w("\nThe ratio is that of the medians over rounds; in brackets, the batch ÷ one stream within each "
              "round's process.")
        w("")

    # measured by hand (`umi eval` over the 190 dev decisions, tens of minutes per row), kept in
    # its own file so that a re-render keeps it
    eval_section = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval_throughput.md")
    if os.path.exists(eval_section):
        w(open(eval_section).read().rstrip() + "\n")
    if train_path and os.path.exists(train_path):
        render_train(w, train_path)
    if mine_path and os.path.exists(mine_path):
        render_mine(w, mine_path)
    if gpu_path and os.path.exists(gpu_path):
        render_gpu(w, gpu_path)
    # counted by scripts/bench/wgpu_launches.sh (a Vulkan adapter, lavapipe will do), kept in its
    # own file as the evaluation throughput is
    launches_section = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wgpu_launches.md")
    if os.path.exists(launches_section):
        w(open(launches_section).read().rstrip() + "\n")
    w("## Targets (from performance-anchors.md)\n")
    w("Decode ≥ 1.0× llama.cpp at equal precision and ≥ 2× transformers; prefill ≥ 1.0× llama.cpp at f32; peak RSS "
      "within 1.2× of the weights plus the KV cache.\n")
    w("## How to reproduce\n")
    w("`cargo build --release -p umi-cli && scripts/bench/setup_peers.sh && scripts/bench/run.sh` "
      "(peers in a venv at /work/venv-bench; models under models/bench/, made by the scripts; "
      "`TASKS=train` measures only LoRA training, `TASKS=generate` only generation, `TASKS=mine` the cost per "
      "decision of self-rewarding mining; "
      "`scripts/bench/render.py scripts/bench/results.json --train scripts/bench/train_results.json "
      "--mine scripts/bench/mine_results.json --gpu scripts/bench/gpu_results.jsonl > BENCHMARKS.md` "
      "re-renders; the GPU section comes from `scripts/bench/gpu.sh` on the GPU machine, its header says how; the "
      "evaluation-throughput section from `scripts/bench/eval_throughput.md`, written by hand from `umi eval` runs; "
      "the wgpu launch counts from `scripts/bench/wgpu_launches.sh > scripts/bench/wgpu_launches.md`).")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results", nargs="?")
    p.add_argument("--collect")
    p.add_argument("--umi")
    p.add_argument("--venv")
    p.add_argument("--train", help="train_results.json (LoRA training runs) to render too")
    p.add_argument("--mine", help="mine_results.json (cost per mining decision) to render too")
    p.add_argument("--gpu", help="gpu_results.jsonl (scripts/bench/gpu.sh on the GPU machine) to render too")
    a = p.parse_args()
    if a.collect:
        collect(a.collect, a.umi, a.venv)
    elif a.results:
        render(a.results, a.train, a.mine, a.gpu)
    else:
        p.error("give results.json or --collect LINES")


if __name__ == "__main__":
    main()
