#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on CPU, 2 threads: prefill 512 / decode 128 greedy, median of 3 (rules in common.py).

  peer_llamacpp.py MODEL.gguf [--precision Q4_1] [--flash-attn] [--prompt-tokens 512] [--new-tokens 128] [--runs 3]

Uses the low-level C API through the Llama object (llama_decode + llama_get_logits_ith + argmax) so that the Python
wrapper's n_ctx x n_vocab score buffer is not filled (it would add ~130 MiB of RSS that llama.cpp itself does not use).
n_ctx max(1024, prompt + new tokens), n_batch = n_ubatch = the prompt's length (the prompt is one batch). Prints one JSON line on stdout.
"""
import argparse
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FTYPES = {0: "f32", 1: "f16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 32: "bf16"}


def gguf_precision(path):
    try:
        import gguf
        f = gguf.GGUFReader(path).fields.get("general.file_type")
        return FTYPES.get(int(f.contents()), f"ftype{int(f.contents())}") if f else "?"
    except Exception:
        return "?"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--precision", help="label for the report (default: from general.file_type)")
    p.add_argument("--flash-attn", action="store_true")
    p.add_argument("--prompt-tokens", type=int, default=common.PROMPT_TOKENS)
    p.add_argument("--new-tokens", type=int, default=common.NEW_TOKENS)
    p.add_argument("--runs", type=int, default=common.RUNS)
    p.add_argument("--threads", type=int, default=common.THREADS)
    a = p.parse_args()
    precision = a.precision or gguf_precision(a.model)  # read before loading, so it does not count in the RSS much

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=a.model, n_ctx=max(1024, a.prompt_tokens + a.new_tokens), n_batch=a.prompt_tokens, n_ubatch=a.prompt_tokens,
                n_threads=a.threads, n_threads_batch=a.threads, logits_all=False, flash_attn=a.flash_attn,
                use_mmap=True, verbose=False)
    ctx = llm.ctx
    n_vocab = llm.n_vocab()
    ids = common.prompt_ids(n_vocab, a.prompt_tokens)

    def clear():
        if hasattr(llama_cpp, "llama_memory_clear"):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        else:
            llama_cpp.llama_kv_self_clear(ctx)

    def decode(tokens):
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    pre, dec = [], []
    for r in range(a.runs):
        clear()
        t0 = time.perf_counter()
        nxt = decode(ids)
        t1 = time.perf_counter()
        toks = []
        for _ in range(a.new_tokens):
            nxt = decode([nxt])
            toks.append(nxt)
        t2 = time.perf_counter()
        pre.append(t1 - t0)
        dec.append(t2 - t1)
        common.log(f"run {r + 1}: prefill {a.prompt_tokens / (t1 - t0):.1f} tok/s, "
                   f"decode {a.new_tokens / (t2 - t1):.2f} tok/s, first tokens {toks[:6]}")

    name = f"llama.cpp (llama-cpp-python {llama_cpp.__version__})" + (" flash-attn" if a.flash_attn else "")
    common.report(name, a.model, precision, pre, dec, a.prompt_tokens, a.new_tokens)


if __name__ == "__main__":
    main()
