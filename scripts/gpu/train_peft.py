#!/usr/bin/env python3
"""Trains a LoRA adapter with PyTorch + PEFT on exactly what `umi train ... --export-for DIR` would
train on: DIR/examples.jsonl (umi's tokenization: "system: " + input with BOS, target + EOS, labels
-100 outside the target, long examples keep their end), DIR/run.json (umi's settings) and DIR/base
(the base model as a Hugging Face folder). For a CUDA GPU, where it runs far faster than umi's own
trainer; the adapter it writes is PEFT's layout, which umi loads (`umi train export` makes the f16
copy umi ships).

  train_peft.py DIR --out ADAPTER_DIR [--batch-size 16] [--epochs N] [--lr X] [--max-steps N]
                [--time-budget S]

--time-budget S fits the schedule to a time budget: after PROBE_STEPS steps it measures the
seconds per step and, if the planned steps would not end within S seconds, shortens the schedule
to the steps that fit (warm-up recomputed from the same ratio, cosine to 0 at the new end), so that
a run cut by the clock still ends with its learning rate at 0 rather than mid-schedule. The fit is
made again every REFIT_EVERY steps over the first half of the schedule from the mean step time so
far (never beyond the planned steps, never before the current one): early steps are slower (CUDA's
kernels and allocator warming up, a second job still loading), and a fit made from them alone
stopped one job of 2026-12-04 at 0.70 of its epoch with 43 % of its budget unspent. A refit moves
the cosine's end, so the learning rate steps by a small amount where it happens.

Same recipe as umi's trainer (crates/umi-train): LoRA r / alpha / dropout / target modules from
run.json; AdamW (betas, eps, decoupled weight decay from run.json); linear warm-up for
ceil(warmup_ratio * steps) steps then cosine to 0 (Hugging Face's get_cosine_schedule_with_warmup);
global gradient-norm clip; loss = mean cross-entropy over the batch's target tokens; batches of
similar length, right-padded, in a seeded shuffled order per epoch. Differences: a larger batch
(--batch-size, default 16; steps are recomputed from it) and bf16 autocast on the GPU (LoRA weights
and optimizer state stay f32).

Writes ADAPTER_DIR/adapter_config.json + adapter_model.safetensors, and ADAPTER_DIR/loss.csv
(step, loss, grad_norm, learning_rate, target_tokens, tokens) as umi's trainer does. Progress on stderr.
"""
import argparse
import csv
import json
import math
import os
import random
import sys
import time


def log(msg):
    print(msg, file=sys.stderr, flush=True)


PROBE_STEPS = 12  # steps timed (after the first two, which pay CUDA's start-up) before fitting
REFIT_EVERY = 50  # steps between refits of the schedule to the time budget (first half only)


def target_loss(model, ids, mask, labels):
    """Mean cross-entropy over the target tokens, the LM head applied at those positions only.

    Equal to Hugging Face's `model(..., labels=labels).loss` (shift by one, mean over labels that
    are not -100), without the (batch, length, vocabulary) logits: α-UMi targets are ~3 % of the
    tokens, and the full logits of 16 × 1536 positions are 4.8 GB in f32 per job, which ran four
    jobs out of the H200's memory. umi's trainer does the same (crates/umi-train).
    """
    import torch.nn.functional as F
    inner = model.get_base_model()
    hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
    shifted = labels[:, 1:]
    at = shifted != -100
    logits = inner.lm_head(hidden[:, :-1][at]).float()
    return F.cross_entropy(logits, shifted[at])


def batches_of(examples, batch_size, seed):
    """Length-bucketed batches (indices), in a seeded shuffled order."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="folder written by `umi train ... --export-for`")
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=float, default=None, help="default: run.json's")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--lr", type=float, default=None, help="default: run.json's")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds: stop early (and save) when a step ends past this")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds of training: after a few steps the schedule is shortened (fewer "
                        "steps, same warm-up ratio, cosine to 0) so that it ends within this budget")
    p.add_argument("--save-dtype", choices=["f16", "f32"], default="f16",
                   help="adapter tensors as written (f16: what umi ships)")
    a = p.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = json.load(open(os.path.join(a.dir, "run.json")))
    cfg = run["config"]
    lora = cfg.get("lora")
    if not lora:
        sys.exit(f"{a.dir}/run.json: this script trains LoRA adapters; export a run with --lora")
    examples = [json.loads(line) for line in open(os.path.join(a.dir, "examples.jsonl"))]
    if not examples:
        sys.exit(f"{a.dir}/examples.jsonl has no examples")
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    lr = a.lr if a.lr is not None else cfg["learning_rate"]
    epochs = a.epochs if a.epochs is not None else cfg["epochs"]
    steps_per_epoch = math.ceil(len(examples) / a.batch_size)
    total = max(1, round(steps_per_epoch * epochs))
    if a.max_steps is not None:
        total = min(total, a.max_steps)
    warmup = math.ceil(cfg["warmup_ratio"] * total)
    planned = total  # the schedule --time-budget may shorten (and lengthen back, up to this)

    torch.manual_seed(cfg["seed"])
    try:
        model = AutoModelForCausalLM.from_pretrained(os.path.join(a.dir, "base"), dtype=torch.float32)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(os.path.join(a.dir, "base"),
                                                     torch_dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"], bias="none",
        task_type="CAUSAL_LM", target_modules=lora["target_modules"]))
    model.to(device)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
                            eps=cfg["adam_epsilon"], weight_decay=cfg["weight_decay"])

    def lr_at(step):  # optimizer step `step` (from 1) uses the schedule at step - 1, as umi and HF
        s = step - 1
        if s < warmup:
            return lr * s / max(1, warmup)
        progress = (s - warmup) / max(1, total - warmup)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    pad = 0
    log(f"{run['role']}: {len(examples)} examples, {total} steps of {a.batch_size} "
        f"(warm-up {warmup}), lr {lr}, LoRA r={lora['r']} alpha={lora['lora_alpha']} on {device}")
    os.makedirs(a.out, exist_ok=True)
    rows, step, epoch, started = [], 0, 0, time.time()
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" \
        else torch.autocast(device_type="cpu", enabled=False)
    probe_start = None
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    while step < total:
        for batch in batches_of(examples, a.batch_size, cfg["seed"] + epoch):
            if step >= total:
                break
            step += 1
            width = max(len(examples[i]["input_ids"]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                e = examples[i]
                n = len(e["input_ids"])
                ids[r, :n] = torch.tensor(e["input_ids"])
                labels[r, :n] = torch.tensor(e["labels"])
                mask[r, :n] = 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with autocast:
                loss = target_loss(model, ids, mask, labels)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                params, cfg["max_grad_norm"] if cfg["max_grad_norm"] > 0 else float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
            target = int((labels[:, 1:] != -100).sum())
            rows.append((step, float(loss.detach()), float(norm), lr_at(step), target,
                         int(mask.sum())))
            if step % 20 == 0 or step == total:
                done = sum(r[5] for r in rows)
                log(f"step {step}/{total}  loss {sum(r[1] for r in rows[-20:]) / len(rows[-20:]):.4f}"
                    f"  lr {lr_at(step):.2e}  {done / (time.time() - started):.0f} tok/s")
            if a.time_budget is not None and step == 2:
                probe_start = time.time()
            refit = step == 2 + PROBE_STEPS or (
                step > 2 + PROBE_STEPS and step % REFIT_EVERY == 0 and step <= total // 2)
            if a.time_budget is not None and refit:
                per_step = (time.time() - probe_start) / (step - 2)
                fits = step + int((a.time_budget - (time.time() - started)) / (per_step * 1.08))
                fitted = max(step, min(planned, fits))
                if fitted != total or step == 2 + PROBE_STEPS:
                    log(f"time budget {a.time_budget:.0f} s at {per_step:.3f} s/step (step {step}): "
                        + (f"all {planned} steps fit" if fitted == planned else
                           f"{fitted} of the planned {planned} steps ({fitted / steps_per_epoch:.2f} epochs)"))
                    total = fitted
                    warmup = math.ceil(cfg["warmup_ratio"] * total)
            if a.time_limit is not None and time.time() - started > a.time_limit:
                log(f"time limit: stopping after step {step} of {total}")
                total = step
        epoch += 1
    if a.save_dtype == "f16":
        for q in params:
            q.data = q.data.to(torch.float16)
    model.save_pretrained(a.out)
    with open(os.path.join(a.out, "loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "grad_norm", "learning_rate", "target_tokens", "tokens"])
        w.writerows(rows)
    log(f"wrote {a.out} ({step} steps, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
