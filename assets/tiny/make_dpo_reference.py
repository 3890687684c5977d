"""Step-DPO reference fixtures (log-probs, losses, TRL metrics, gradients, one AdamW step) for the tiny Llama.

Purpose: reference numbers for umi's step-level DPO (../shared/docs/psrlm-design.md §2.10, test T1), computed by
PyTorch + PEFT in float64 from the tiny model in assets/tiny/llama-gqa with the PEFT adapter of
assets/tiny/training/peft_adapter (written by make_training_reference.py; its lora_B ~ N(0, 0.02^2), so the
policy is not the base model). The policy log-probs are computed two independent ways and asserted equal to 1e-12:
(a) TRL's own batch layout: `trl.trainer.dpo_trainer.DataCollatorForPreference(pad_token_id=0)` over
{prompt_ids, chosen_ids, rejected_ids}, then log-softmax of logits[..., :-1] gathered at input_ids[..., 1:],
masked by completion_mask[..., 1:] and summed, as `DPOTrainer._compute_loss` does; (b) each prompt + completion
alone, unpadded. The losses are TRL's formulas (`loss_type` "sigmoid", "sigmoid_norm", "robust", "sft"):
    sigmoid       -logsigmoid(beta * delta), delta = (pc - rc) - (pr - rr), mean over pairs
    sigmoid_norm  -logsigmoid(beta * ((pc - rc) / |y+| - (pr - rr) / |y-|)), mean over pairs
    robust        (-(1 - eps) logsigmoid(beta delta) + eps logsigmoid(-beta delta)) / (1 - 2 eps)
    sft           -(sum of chosen token log-probs) / (number of chosen tokens), added with a weight

Rerun (from the repository root; a few seconds on CPU, deterministic):
    /work/venv-ref/bin/python assets/tiny/make_dpo_reference.py
Versions used: torch 2.15.0, transformers 5.24.0, peft 0.21.2, trl 1.16.0.

Writes assets/tiny/dpo/:
  pairs.json              the three pairs as token ids (prompt 5-9 tokens, completions 2-6 tokens ending with
                          EOS id 2; pair 1's completions share their first two tokens, pair 2's rejected one is
                          longer); vocabulary 256, BOS 1
  reference.json          per pair: policy log-probs (the adapter), reference log-probs R0 (the same adapter:
                          the identity case) and R1 (the adapter disabled: the base model); losses and TRL metrics
                          for R1 at beta 0.1 and 0.5 and the variants; the pre-clip gradient norm; settings
  grads.safetensors       d loss / d lora_A, lora_B (sigmoid, beta 0.1, reference R1), PEFT adapter-file names
  after_adamw.safetensors the LoRA weights after clip_grad_norm_(1.0) + AdamW (lr 1e-3, wd 0.01, foreach=False)
                          on those gradients
Every computation is float64 (the float32 islands of transformers' Llama removed by make_training_reference's
`true_float64`); tensors are stored as float32, JSON floats are the float64 values.
"""

import math
import os
import shutil
import sys

sys.dont_write_bytecode = True

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from make_training_reference import adapter_name, dump_json, f32, load_base, true_float64  # noqa: E402

OUT = os.path.join(HERE, "dpo")
ADAPTER = "assets/tiny/training/peft_adapter"
PAIRS = [
    {"id": "plain", "prompt_ids": [1, 17, 42, 99, 3], "chosen_ids": [250, 7, 2], "rejected_ids": [128, 64, 33, 2]},
    {
        "id": "shared-start",
        "prompt_ids": [1, 5, 77, 5, 200, 31, 9],
        "chosen_ids": [144, 88, 12, 2],
        "rejected_ids": [144, 88, 201, 5, 2],
    },
    {
        "id": "long-rejected",
        "prompt_ids": [1, 60, 61, 62, 63, 64, 65, 66, 67],
        "chosen_ids": [9, 2],
        "rejected_ids": [30, 31, 32, 33, 34, 2],
    },
]
BETAS = [0.1, 0.5]
LABEL_SMOOTHING = 0.1
SFT_WEIGHT = 0.5
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MAX_GRAD_NORM = 1.0


def trl_logps(model):
    """Policy log-probs [2K] (chosen..., rejected...) in TRL's padded batch layout."""
    batch = DataCollatorForPreference(pad_token_id=0)([dict(p) for p in PAIRS])
    with true_float64():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.dtype == torch.float64
    logp = torch.log_softmax(logits[..., :-1, :], dim=-1)
    per_token = logp.gather(-1, batch["input_ids"][..., 1:, None])[..., 0]
    return (per_token * batch["completion_mask"][..., 1:]).sum(dim=1)


def alone_logps(model):
    """The same log-probs, each prompt + completion computed alone (no padding)."""
    out = {"chosen": [], "rejected": []}
    for which in out:
        for p in PAIRS:
            ids = p["prompt_ids"] + p[f"{which}_ids"]
            with true_float64():
                logits = model(input_ids=torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits[:-1], dim=-1)
            n = len(p[f"{which}_ids"])
            targets = torch.tensor(ids[1:])
            out[which].append(logp.gather(-1, targets[:, None])[-n:, 0].sum())
    return torch.stack(out["chosen"] + out["rejected"])


def losses(policy, reference, beta):
    """TRL's per-step losses and metrics from [2K] policy and reference log-probs."""
    k = len(PAIRS)
    pc, pr = policy[:k], policy[k:]
    rc, rr = reference[:k], reference[k:]
    delta = (pc - rc) - (pr - rr)
    len_c = torch.tensor([len(p["chosen_ids"]) for p in PAIRS], dtype=torch.float64)
    len_r = torch.tensor([len(p["rejected_ids"]) for p in PAIRS], dtype=torch.float64)
    eps = LABEL_SMOOTHING
    sft = -pc.sum() / len_c.sum()
    out = {
        "sigmoid": (-F.logsigmoid(beta * delta)).mean(),
        "sigmoid_norm": (-F.logsigmoid(beta * ((pc - rc) / len_c - (pr - rr) / len_r))).mean(),
        "robust": ((-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)).mean(),
    }
    out["sigmoid_plus_sft"] = out["sigmoid"] + SFT_WEIGHT * sft
    chosen_rewards = beta * (pc - rc)
    rejected_rewards = beta * (pr - rr)
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).double().mean().item(),
        "logps/chosen": pc.mean().item(),
        "logps/rejected": pr.mean().item(),
    }
    return out, metrics


def main():
    os.chdir(REPO)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)

    model = PeftModel.from_pretrained(load_base(), ADAPTER, is_trainable=True)
    model.double()
    model.eval()  # no dropout (TRL's disable_dropout); the adapter's lora_dropout is 0 anyway
    lora_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(lora_params) == 28 and all(".lora_A." in n or ".lora_B." in n for n, _ in lora_params)

    policy = trl_logps(model)
    with torch.no_grad():
        alone = alone_logps(model)
        assert (alone - policy.detach()).abs().max() < 1e-12, "padded (TRL) and unpadded log-probs differ"
        with model.disable_adapter():
            ref_base = trl_logps(model)
            assert (alone_logps(model) - ref_base).abs().max() < 1e-12
    ref_same = policy.detach().clone()
    assert (policy.detach() - ref_base).abs().max() > 1e-3, "the adapter must change the log-probs"

    results = {}
    for beta in BETAS:
        values, metrics = losses(policy.detach(), ref_base, beta)
        identity, _ = losses(policy.detach(), ref_same, beta)
        assert abs(identity["sigmoid"].item() - math.log(2)) < 1e-15
        results[str(beta)] = {"losses": {k: v.item() for k, v in values.items()}, "metrics": metrics}

    # gradients and one optimizer step: sigmoid, beta 0.1, reference R1
    loss, _ = losses(policy, ref_base, 0.1)
    loss["sigmoid"].backward()
    save_file(f32({adapter_name(n): p.grad for n, p in lora_params}), os.path.join(OUT, "grads.safetensors"))
    params = [p for _, p in lora_params]
    opt = torch.optim.AdamW(params, foreach=False, **ADAMW)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM, foreach=False).item()
    opt.step()
    save_file(f32({adapter_name(n): p for n, p in lora_params}), os.path.join(OUT, "after_adamw.safetensors"))

    dump_json(os.path.join(OUT, "pairs.json"), {"pairs": PAIRS})
    k = len(PAIRS)
    dump_json(
        os.path.join(OUT, "reference.json"),
        {
            "policy_logps": {"chosen": policy[:k].tolist(), "rejected": policy[k:].tolist()},
            "reference_logps": {
                "R0_same_adapter": {"chosen": ref_same[:k].tolist(), "rejected": ref_same[k:].tolist()},
                "R1_base": {"chosen": ref_base[:k].tolist(), "rejected": ref_base[k:].tolist()},
            },
            "by_beta_with_R1": results,
            "label_smoothing": LABEL_SMOOTHING,
            "sft_weight": SFT_WEIGHT,
            "gradient_case": "sigmoid, beta 0.1, reference R1, mean over the 3 pairs",
            "grad_norm": grad_norm,
            "optimizer": {
                "name": "torch.optim.AdamW",
                "lr": ADAMW["lr"],
                "betas": list(ADAMW["betas"]),
                "eps": ADAMW["eps"],
                "weight_decay": ADAMW["weight_decay"],
                "max_grad_norm": MAX_GRAD_NORM,
            },
            "versions": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
                "trl": trl.__version__,
            },
        },
    )
    print(f"sigmoid loss (beta 0.1, R1) {results['0.1']['losses']['sigmoid']!r}  grad_norm {grad_norm!r}")


if __name__ == "__main__":
    main()
