#!/usr/bin/env python3
"""umi → PEFT fixture (tests/tests/peft_roundtrip.rs): transformers + PEFT load the adapter that umi
wrote into adapter/ (deterministic values, `UMI_BLESS=1 cargo test --release --workspace --test
peft_roundtrip` rewrites it) onto the tiny Hugging Face model assets/tiny/llama-gqa and compute the
logits umi must also compute with it.

  /work/venv-ref/bin/python assets/tiny/peft-umi/make_reference.py

Needs torch, transformers and peft (written with torch 2.15, transformers 5.24, peft 0.21).
Writes reference.json: the adapter's sha256, token ids and, at every position, the logits.
"""
import hashlib
import json
import os

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
base_dir = os.path.join(here, "..", "llama-gqa")
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
model = PeftModel.from_pretrained(base, os.path.join(here, "adapter"))
model.eval()
ids = [1] + [(i * 53 + 5) % 256 for i in range(19)]
with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    with model.disable_adapter():
        base_logits = model(input_ids=torch.tensor([ids])).logits[0]
weights = open(os.path.join(here, "adapter", "adapter_model.safetensors"), "rb").read()
json.dump({
    "_source": f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}",
    "adapter_sha256": hashlib.sha256(weights).hexdigest(),
    "ids": ids,
    "logits": [[round(float(x), 6) for x in row] for row in logits],
    "max_adapter_effect": float((logits - base_logits).abs().max()),
}, open(os.path.join(here, "reference.json"), "w"))
print("max |logits - base logits| =", float((logits - base_logits).abs().max()))
