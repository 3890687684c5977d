"""Shared rules of the CPU benchmark (same shapes as shared/docs/performance-anchors.md).

- Batch 1; prompt token i = (i * 7919 + 13) % vocab_size (the rule umi bench uses); PROMPT_TOKENS = 512.
- Prefill: one forward over the 512 prompt tokens (filling the KV cache); prefill tok/s = 512 / its time.
- Decode: NEW_TOKENS = 128 greedy steps, each one forward of one token with the KV cache; the first token fed is the
  argmax of the prefill logits; no EOS stop; decode tok/s = 128 / the time of the 128 steps.
- 2 threads; median of 3 runs; peak RSS of the whole process (ru_maxrss, includes loading the model).
"""
import json
import resource
import statistics
import sys

PROMPT_TOKENS = 512
NEW_TOKENS = 128
RUNS = 3
THREADS = 2


def prompt_ids(vocab_size, n=PROMPT_TOKENS):
    return [(i * 7919 + 13) % vocab_size for i in range(n)]


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def report(system, model, precision, prefill_times, decode_times, n_prompt, n_new, extra=None):
    line = {
        "system": system,
        "model": model,
        "precision": precision,
        "prompt_tokens": n_prompt,
        "new_tokens": n_new,
        "prefill_tok_s": round(n_prompt / statistics.median(prefill_times), 3),
        "decode_tok_s": round(n_new / statistics.median(decode_times), 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    if extra:
        line.update(extra)
    print(json.dumps(line), flush=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)
