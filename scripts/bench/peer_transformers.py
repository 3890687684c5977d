#!/usr/bin/env python3
"""transformers + torch on CPU, f32, 2 threads: prefill 512 / decode 128 greedy, median of 3 (rules in common.py).

  peer_transformers.py MODEL_DIR [--prompt-tokens 512] [--new-tokens 128] [--runs 3] [--threads 2] [--dtype float32]
                       [--device cpu|cuda]

--device cuda runs on the GPU (scripts/bench/gpu.sh), timings taken after torch.cuda.synchronize().

Prints one JSON line on stdout, like `umi bench`. Progress goes to stderr.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--prompt-tokens", type=int, default=common.PROMPT_TOKENS)
    p.add_argument("--new-tokens", type=int, default=common.NEW_TOKENS)
    p.add_argument("--runs", type=int, default=common.RUNS)
    p.add_argument("--threads", type=int, default=common.THREADS)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    dtype = getattr(torch, a.dtype)
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=dtype)
    model.eval().to(a.device)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()
    common.log(f"loaded {a.model_dir} in {time.perf_counter() - t0:.1f}s, "
               f"attn={getattr(model.config, '_attn_implementation', '?')}")
    vocab = model.config.vocab_size
    ids = torch.tensor([common.prompt_ids(vocab, a.prompt_tokens)], dtype=torch.long, device=a.device)

    pre, dec = [], []
    with torch.inference_mode():
        for r in range(a.runs):
            sync()
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            sync()
            t1 = time.perf_counter()
            past = out.past_key_values
            del out
            toks = []
            for _ in range(a.new_tokens):
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
                toks.append(int(nxt))
            sync()
            t2 = time.perf_counter()
            del out, past
            pre.append(t1 - t0)
            dec.append(t2 - t1)
            common.log(f"run {r + 1}: prefill {a.prompt_tokens / (t1 - t0):.1f} tok/s, "
                       f"decode {a.new_tokens / (t2 - t1):.2f} tok/s, first tokens {toks[:6]}")

    prec = "f32" if a.dtype == "float32" else "bf16"
    common.report(f"transformers {transformers.__version__} + torch {torch.__version__.split('+')[0]} ({a.device.upper()})",
                  a.model_dir, prec, pre, dec, a.prompt_tokens, a.new_tokens)


if __name__ == "__main__":
    main()
