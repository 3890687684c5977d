#!/usr/bin/env python3
"""PyTorch + PEFT on CPU: LoRA training steps, the twin of `umi bench --train`.

  peer_peft_train.py MODEL_DIR [--seq-len 512] [--batch-size 1] [--runs 3] [--threads 2] [--device cpu|cuda]

Same step as umi's: BATCH_SIZE rows of SEQ_LEN tokens (row r, token i = ((i + r) * 7919 + 13) % vocab),
labels = the inputs (loss on every shifted position), LoRA r 8 / alpha 16 / dropout 0 on q, k, v, o,
gate, up and down projections, AdamW lr 1e-4 (betas 0.9/0.999, eps 1e-8, no weight decay),
gradient clipping at 1.0, f32, 2 threads. One warm-up step, then RUNS timed steps; train tok/s is
BATCH_SIZE * SEQ_LEN / the median step time. Peak RSS is the whole process (ru_maxrss).

Prints one JSON line on stdout, like `umi bench --train`. Progress goes to stderr.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--seq-len", type=int, default=common.PROMPT_TOKENS)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--runs", type=int, default=common.RUNS)
    p.add_argument("--threads", type=int, default=common.THREADS)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: on the GPU (scripts/bench/gpu.sh)")
    a = p.parse_args()

    import peft
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32).to(a.device)
    model = get_peft_model(model, LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    vocab = model.config.vocab_size
    ids = torch.tensor([[((i + r) * 7919 + 13) % vocab for i in range(a.seq_len)]
                        for r in range(a.batch_size)], dtype=torch.long, device=a.device)
    tokens = a.batch_size * a.seq_len

    rates = []
    for step in range(a.runs + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        rate = tokens / (time.perf_counter() - t0)
        common.log(f"step {step + 1}{' (warm-up)' if step == 0 else ''}: loss {value:.4f}, {rate:.1f} tok/s")
        if step > 0:
            rates.append(rate)

    print(json.dumps({
        "system": f"PyTorch {torch.__version__.split('+')[0]} + PEFT {peft.__version__} ({a.device.upper()})",
        "model": a.model_dir,
        "precision": "f32",
        "task": "lora-train",
        "batch_size": a.batch_size,
        "seq_len": a.seq_len,
        "train_tok_s": round(statistics.median(rates), 3),
        "peak_rss_mib": round(common.peak_rss_mib(), 1),
    }), flush=True)


if __name__ == "__main__":
    main()
