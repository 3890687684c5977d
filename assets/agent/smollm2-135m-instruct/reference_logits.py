"""Reference logits of the shipped α-UMi agent, computed independently of umi.

For each role adapter in this folder (PEFT LoRA, f16 safetensors) the script folds the update
(lora_alpha / r) · B · A into the dequantized SmolLM2-135M-Instruct GGUF weights and runs a float64
numpy Llama (`assets/tiny/llama_ref.py`, the same reference the model's parity tests use) on one
fixed α-UMi prompt per role. It writes `reference_logits.json`: the prompt, its token ids (HF
`tokenizers` on the GGUF's vocabulary), and per role the adapter's sha256, the top-20 logits at the
last position and the greedy next token at each of the last 16 positions.
`tests/tests/shipped_agent.rs` loads the same files with umi and compares.

Usage (numpy, gguf, tokenizers, safetensors installed):
    python3 assets/agent/smollm2-135m-instruct/reference_logits.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import hashlib
import json
import os
import sys
import time

import gguf
import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "assets", "reference"))
sys.path.insert(0, os.path.join(REPO, "assets", "tiny"))
from llama_ref import llama_forward  # noqa: E402
from smollm2_reference import build_tokenizer, field, load_weights  # noqa: E402

DEFAULT_GGUF = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

# Two demo tools as the prompts show them (ToolBench docs, Python json.dumps spacing).
DOC = (
    '{"Name": "convert_currency", "function": "Converts an amount between currencies (EUR, USD, GBP, '
    'JPY, CHF, CNY, INR, CAD, AUD) with a bundled rate table (ECB reference rates of 2026-11-20).", '
    '"input": {"amount": "number, the amount", "from": "string, ISO currency code", "to": "string, ISO currency code"}}\n'
    '{"Name": "weekday", "function": "The day of the week of a date (YYYY-MM-DD).", '
    '"input": {"date": "string, YYYY-MM-DD"}}\n'
)
QUERY = "What is 100 USD in EUR, and what day of the week is 2026-12-25?"
THOUGHT = "I will call convert_currency with amount 100, from USD and to EUR. Next: caller."
PROMPTS = {
    # GLPFT's toolbench planner / caller / summarizer templates, filled, plus the role cue.
    "planner": (
        f"You have assess to the following apis:\n{DOC}\nThe conversation history is:\nuser: {QUERY}</s>\n"
        "You are the assistant to plan what to do next and whether is caller's or conclusion's turn to answer.\n"
        "Answer with a following format:\nThe thought of the next step, followed by Next: caller or conclusion or give up."
        " assistant: "
    ),
    "caller": (
        f"You have assess to the following apis:\n{DOC}\nThe conversation history is:\nuser: {QUERY}</s>assistant: {THOUGHT}</s>\n"
        f"The thought of this step is:\n{THOUGHT}\nBase on the thought make an api call in the following format:\n"
        "Action: the name of api that should be called in this step, should be exactly in [convert_currency, weekday],\n"
        "Action Input: the api call request. caller: "
    ),
    "summarizer": (
        f"Make a conclusion based on the conversation history:\nuser: {QUERY}</s>assistant: {THOUGHT}</s>"
        'caller: Action: convert_currency\nAction Input: {"amount": 100, "from": "USD", "to": "EUR"}</s>'
        'observation: {"error":"","response":{"amount":92.21,"currency":"EUR","rate":0.922084,"rates_date":"2026-11-20"}}'
        "assistant: 100 USD is 92.21 EUR. Next: conclusion.</s> conclusion: "
    ),
}


def with_adapter(base, folder):
    config = json.load(open(os.path.join(folder, "adapter_config.json")))
    tensors = load_file(os.path.join(folder, "adapter_model.safetensors"))
    scale = config["lora_alpha"] / config["r"]
    w = dict(base)
    count = 0
    for name, a in tensors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name[len("base_model.model."): -len(".lora_A.weight")]
        b = tensors[name.replace("lora_A", "lora_B")]
        key = module + ".weight"
        w[key] = base[key].astype(np.float64) + scale * (b.astype(np.float64) @ a.astype(np.float64))
        count += 1
    return w, count


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    t0 = time.time()
    reader = gguf.GGUFReader(path)
    cfg = {
        "vocab_size": int(field(reader, "llama.vocab_size")),
        "hidden_size": int(field(reader, "llama.embedding_length")),
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_attention_heads": int(field(reader, "llama.attention.head_count")),
        "num_key_value_heads": int(field(reader, "llama.attention.head_count_kv")),
        "rms_norm_eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(reader, "llama.rope.freq_base")),
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
    }
    cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    tok = build_tokenizer(reader)
    base = load_weights(reader, cfg, do_unpermute=True)
    if cfg["tie_word_embeddings"]:
        base["lm_head.weight"] = base["model.embed_tokens.weight"]
    out = {"gguf_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(), "roles": {}}
    for role, prompt in PROMPTS.items():
        folder = os.path.join(HERE, role)
        w, count = with_adapter(base, folder)
        ids = tok.encode(prompt, add_special_tokens=False).ids
        logits = llama_forward(w, cfg, ids)
        last = logits[-1]
        top = np.argsort(-last)[:20]
        out["roles"][role] = {
            "adapter_sha256": hashlib.sha256(
                open(os.path.join(folder, "adapter_model.safetensors"), "rb").read()
            ).hexdigest(),
            "lora_modules": count,
            "prompt": prompt,
            "ids": ids,
            "top20": [[int(i), float(last[i])] for i in top],
            "greedy_last16": [int(x) for x in logits[-16:].argmax(axis=-1)],
        }
        print(f"{role}: {len(ids)} tokens, {count} LoRA modules, next token {tok.decode([int(top[0])])!r} "
              f"({time.time() - t0:.0f}s)")
    with open(os.path.join(HERE, "reference_logits.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
