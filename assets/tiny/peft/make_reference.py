#!/usr/bin/env python3
"""Builds the PEFT round-trip fixture beside it (tests/tests/peft_roundtrip.rs): the tiny GGUF model,
exported by umi as a Hugging Face folder, gets a LoRA adapter trained by PyTorch + PEFT on umi's own
examples (scripts/gpu/train_peft.py), and transformers + PEFT compute the logits that umi must
reproduce when it loads the same adapter onto the GGUF.

  umi train local --role planner --model assets/tiny/gguf/tiny-f32.gguf --data SMALL.json --split all \
      --lora --lora-r 4 --lora-alpha 8 --lr 1e-3 --out /tmp/unused --export-for /tmp/exp-tiny
  python scripts/gpu/train_peft.py /tmp/exp-tiny --out assets/tiny/peft/adapter --batch-size 4 --max-steps 25
  python assets/tiny/peft/make_reference.py /tmp/exp-tiny/base

(SMALL.json: the first 40 conversations of `umi data synth --all-tools-share 1.0`.) Needs torch,
transformers and peft. Writes reference.json: token ids and, at every position, the logits (f32).
"""
import hashlib
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model = PeftModel.from_pretrained(base, os.path.join(here, "adapter"))
model.eval()
ids = [1] + [(i * 37 + 11) % 256 for i in range(23)]
with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    with model.disable_adapter():
        base_logits = model(input_ids=torch.tensor([ids])).logits[0]
weights = open(os.path.join(here, "adapter", "adapter_model.safetensors"), "rb").read()
json.dump({
    "adapter_sha256": hashlib.sha256(weights).hexdigest(),
    "ids": ids,
    "logits": [[round(float(x), 6) for x in row] for row in logits],
    "max_adapter_effect": float((logits - base_logits).abs().max()),
}, open(os.path.join(here, "reference.json"), "w"))
print("max |logits - base logits| =", float((logits - base_logits).abs().max()))
