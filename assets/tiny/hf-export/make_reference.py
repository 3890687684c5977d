"""Reads umi's tokenizer export in this folder with transformers and writes expected.json.

tests/tests/hf_export.rs checks that umi writes exactly these tokenizer.json and
tokenizer_config.json for tiny-spm.gguf's tokenizer with SmolLM2's ChatML template, and that
umi's ids and chat prompts equal what transformers makes of the same files:

    UMI_BLESS=1 cargo test --release --workspace --test hf_export   # rewrites the export files
    /work/venv-ref/bin/python assets/tiny/hf-export/make_reference.py

Needs transformers (written with 5.24.0).
"""

import json
import pathlib

import transformers
from transformers import AutoTokenizer

HERE = pathlib.Path(__file__).resolve().parent
TEXTS = [
    "the quick brown fox",
    "Hello, World! 123",
    "I will call weekday. Next: caller.",
]

tok = AutoTokenizer.from_pretrained(str(HERE))
cases = []
for text in TEXTS:
    chat = tok.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    cases.append(
        {
            "text": text,
            "ids": tok(text)["input_ids"],
            "chat": chat,
            "chat_ids": tok(chat)["input_ids"],
        }
    )
out = {"_source": f"transformers {transformers.__version__}, AutoTokenizer", "cases": cases}
lines = ",\n  ".join(json.dumps(c) for c in cases)
text = f'{{"_source": {json.dumps(out["_source"])},\n "cases": [\n  {lines}\n ]}}\n'
assert json.loads(text) == out
(HERE / "expected.json").write_text(text)
print(text)
