"""Step-level DPO with TRL on umi's preference pairs: the scale-out of `umi train dpo` on a GPU.

Trains the same thing as `umi train dpo` (psrlm-design.md §2.10, TRL's losses): a role's PEFT LoRA adapter continued
on pairs of one better and one worse next step, relative to the starting adapter as the frozen reference. It reads
umi's records with token ids and reference log-probs, as `umi reward export` writes them (`prompt_ids`, `chosen_ids`,
`rejected_ids`, `ref_chosen_logps`, `ref_rejected_logps`), so TRL trains on exactly the tokens umi would (no
re-tokenization: `_prepare_dataset` passes the ids through) and uses umi's reference log-probs (no reference
forward). The adapter it saves loads back into umi (`--planner-adapter OUT`, `umi train dpo --adapter OUT`).

    umi train local ... --export-for runs/export     # or any Hugging Face folder of the base model
    umi reward export --pairs runs/pairs-it1/pairs.jsonl --adapter runs/m1/final/adapter --out runs/pairs-it1/ids.jsonl
    python scripts/trl/dpo_umi.py --model runs/export/base --adapter runs/m1/final/adapter \\
        --pairs runs/pairs-it1/ids.jsonl --out runs/m2-trl

Needs torch, transformers, peft and trl (tested with torch 2.15, transformers 5.24, peft 0.21.2, trl 1.16.0).
"""

import argparse
import json

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer


class UmiDPOTrainer(DPOTrainer):
    """DPOTrainer on umi's token ids and recorded reference log-probs."""

    def _prepare_dataset(self, dataset, *args, **kwargs):
        return dataset  # already token ids, exactly as umi tokenized them

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if "ref_chosen_logps" in dataset.column_names:
            return dataset  # recorded by umi with the starting adapter
        return super()._precompute_ref_logps(dataset, name, batch_size)


def read_pairs(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            missing = [k for k in ("prompt_ids", "chosen_ids", "rejected_ids") if k not in r]
            if missing:
                raise SystemExit(f"{path} line {n}: no {', '.join(missing)}; write the pairs with `umi reward export`")
            row = {k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
            if "ref_chosen_logps" in r and "ref_rejected_logps" in r:
                row["ref_chosen_logps"] = float(r["ref_chosen_logps"])
                row["ref_rejected_logps"] = float(r["ref_rejected_logps"])
            rows.append(row)
    with_refs = sum("ref_chosen_logps" in r for r in rows)
    if 0 < with_refs < len(rows):
        raise SystemExit(f"{path}: {with_refs} of {len(rows)} pairs have reference log-probs; export them all again")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face folder of the base model (--init-adapter merged)")
    p.add_argument("--adapter", required=True, help="the PEFT adapter DPO starts from (and the reference)")
    p.add_argument("--pairs", required=True, nargs="+", help="umi reward export's JSON lines")
    p.add_argument("--out", required=True)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--loss", default="sigmoid", choices=["sigmoid", "sigmoid_norm", "robust"])
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="bfloat16 weights and compute (GPU)")
    a = p.parse_args()

    rows = [r for path in a.pairs for r in read_pairs(path)]
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    model = PeftModel.from_pretrained(base, a.adapter, is_trainable=True)
    if "ref_chosen_logps" not in rows[0]:
        # TRL uses an adapter named "ref" as the reference when there is one: the starting adapter, frozen.
        model.load_adapter(a.adapter, adapter_name="ref", is_trainable=False)
        model.set_adapter("default")
    config = DPOConfig(
        output_dir=a.out,
        beta=a.beta,
        loss_type=[a.loss],
        label_smoothing=a.label_smoothing,
        learning_rate=a.lr,
        num_train_epochs=a.epochs,
        max_steps=a.max_steps,
        per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        lr_scheduler_type="cosine",
        warmup_steps=a.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        weight_decay=a.weight_decay,
        max_grad_norm=a.max_grad_norm,
        max_length=None,
        disable_dropout=True,
        precompute_ref_log_probs="ref_chosen_logps" in rows[0],
        bf16=a.bf16,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=a.seed,
    )
    trainer = UmiDPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    model.save_pretrained(a.out, selected_adapters=["default"])
    with open(f"{a.out}/log_history.json", "w") as f:
        json.dump(trainer.state.log_history, f, indent=1)
    print(f"wrote the adapter to {a.out} ({len(rows)} pairs); load it in umi with --planner-adapter {a.out}")


if __name__ == "__main__":
    main()
