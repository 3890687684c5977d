"""Reference facts for the real SmolLM2-135M-Instruct Q4_1 GGUF, for the Rust tests to compare against.

Produces assets/reference/smollm2.json with:
  "model":      file name, sha256, and the architecture numbers read from the GGUF metadata
  "tokenizer":  token ids (and decode round-trip) for three strings: the France question, a multilingual
                sample, and the full ChatML France prompt (specials <|im_start|>=1, <|im_end|>=2)
  "perplexity": a fixed English paragraph, its ids, and perplexity with and without undoing llama.cpp's
                q/k row permutation (exp of mean NLL of predicting tokens 1..n-1 from their prefixes; no BOS)
  "greedy":     greedy continuation of the ChatML France prompt: first 12 new ids (stops early at eos 2)
                and their decoded text
  "logits_first_positions": top-5 (id, logit) at the last prompt position of the France chat prompt, plus the
                top-5 at the first 4 prompt positions (cheap to check with a short prefix)

How it works (all independent of the umi Rust code):
  1. tokenizer.json is built in memory from the GGUF metadata (docs/weights.md §5.1 step 6): byte-level BPE
     (vocab + 48,900 merges), the 17 control tokens (ids 0-16) as special added tokens, pre_tokenizer
     Sequence[Digits{individual_digits: true}, ByteLevel{add_prefix_space: false, use_regex: true}],
     ByteLevel decoder and post-processor, no normalizer. It is not written to disk (1.7 MB).
  2. Every tensor is dequantized with gguf.quants.dequantize (Q8_0 embedding, Q4_1 matrices, F32 norms) and
     reshaped to (out, in) = reversed GGUF ne. q/k are un-permuted back to HF rotate-half order: view as
     (num_heads, head_dim/2, 2, in), swap the two middle axes, flatten (9 heads for q, 3 for k).
  3. The forward pass is the numpy HF-Llama reference in assets/tiny/llama_ref.py, run in float64, tied head.

Run:  python3 assets/reference/smollm2_reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
      (default path models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root; ~1-2 min on 2 CPUs,
      ~3 GB RAM peak). Deterministic (no sampling).
Versions used: Python 3.11.7, numpy 2.4.6, gguf 0.19.0, tokenizers 0.23.3.
"""

import hashlib
import json
import math
import os
import sys
import time

import gguf
import numpy as np
import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "assets", "tiny"))
from llama_ref import llama_forward  # noqa: E402

DEFAULT_GGUF = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

FRANCE_QUESTION = "What is the capital of France?"
MULTILINGUAL = "Grüße aus Köln! 東京は晴れです。 Привет, мир! 12345 🙂"
CHAT_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)
PARAGRAPH = (
    "The river runs slowly through the old town, past the market square and the stone bridge. "
    "In the summer, children swim near the bank while their parents sit in the shade of the tall trees. "
    "In the winter, the water rises and the streets close to the river are often flooded."
)
N_GREEDY = 12
EOS = 2

GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def field(reader, key):
    return reader.fields[key].contents()


def build_tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    assert field(reader, "tokenizer.ggml.model") == "gpt2" and field(reader, "tokenizer.ggml.pre") == "smollm"
    pairs = []
    for m in merges:
        parts = m.split(" ")
        assert len(parts) == 2, m
        pairs.append(parts)
    special = [i for i, t in enumerate(types) if t == 3]  # 3 = CONTROL
    assert special == list(range(17)), special
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i in special
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        },
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": dict(byte_level),
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": pairs,
        },
    }
    assert len(spec["model"]["vocab"]) == len(tokens) == 49152
    return Tokenizer.from_str(json.dumps(spec))


def unpermute(w, n_heads):
    """GGUF (llama.cpp interleaved-RoPE order) -> HF rotate-half order. HF row j*half+i = GGUF row 2*i+j."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, hd // 2, 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)


def load_weights(reader, cfg, do_unpermute=True):
    w = {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        arr = np.ascontiguousarray(arr.reshape(tuple(int(x) for x in reversed(t.shape))), dtype=np.float32)
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            _, layer, kind, _ = name.split(".")
            hf = f"model.layers.{layer}.{GGUF_TO_HF[kind]}.weight"
            if do_unpermute and kind == "attn_q":
                arr = unpermute(arr, cfg["num_attention_heads"])
            elif do_unpermute and kind == "attn_k":
                arr = unpermute(arr, cfg["num_key_value_heads"])
        w[hf] = arr
    return w


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def perplexity(weights, cfg, ids):
    logits = llama_forward(weights, cfg, ids, dtype=np.float64)
    lp = log_softmax(logits[:-1])
    nll = -lp[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(math.exp(nll.mean())), float(nll.mean())


def top5(row):
    idx = np.argsort(-row, kind="stable")[:5]
    return [[int(i), float(row[i])] for i in idx]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    t0 = time.time()
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    reader = gguf.GGUFReader(path)
    cfg = {
        "vocab_size": int(field(reader, "llama.vocab_size")),
        "hidden_size": int(field(reader, "llama.embedding_length")),
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_attention_heads": int(field(reader, "llama.attention.head_count")),
        "num_key_value_heads": int(field(reader, "llama.attention.head_count_kv")),
        "rms_norm_eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),  # f32 1e-5
        "rope_theta": float(field(reader, "llama.rope.freq_base")),
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
    }
    cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    print("config:", cfg)

    tok = build_tokenizer(reader)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    dec = lambda ids: tok.decode(ids, skip_special_tokens=False)  # noqa: E731
    tok_facts = {}
    for s in [FRANCE_QUESTION, MULTILINGUAL, CHAT_PROMPT]:
        ids = enc(s)
        tok_facts[s] = {"ids": ids, "tokens": tok.encode(s, add_special_tokens=False).tokens,
                        "decode_roundtrip": dec(ids) == s}
        print(f"tokens {s!r}: {ids} roundtrip={dec(ids) == s}")
    chat_ids = tok_facts[CHAT_PROMPT]["ids"]
    assert chat_ids[0] == 1 and chat_ids.count(1) == 3 and chat_ids.count(2) == 2

    print(f"loading + dequantizing ... ({time.time() - t0:.1f}s)")
    w = load_weights(reader, cfg, do_unpermute=True)
    w_perm = load_weights(reader, cfg, do_unpermute=False)
    print(f"loaded {len(w)} tensors ({time.time() - t0:.1f}s)")

    para_ids = enc(PARAGRAPH)
    ppl, nll = perplexity(w, cfg, para_ids)
    ppl_np, nll_np = perplexity(w_perm, cfg, para_ids)
    del w_perm
    print(f"perplexity ({len(para_ids)} tokens): with un-permute {ppl:.4f}, without {ppl_np:.4f} "
          f"({time.time() - t0:.1f}s)")

    # Greedy decode (full forward each step; no KV cache needed at this size).
    ids = list(chat_ids)
    new = []
    first_logits = None
    for _ in range(N_GREEDY):
        logits = llama_forward(w, cfg, ids, dtype=np.float64)
        if first_logits is None:
            first_logits = logits
        nxt = int(np.argmax(logits[-1]))
        new.append(nxt)
        ids.append(nxt)
        if nxt == EOS:
            break
    text = dec(new)
    print(f"greedy ids {new}  text {text!r} ({time.time() - t0:.1f}s)")
    last_top5 = top5(first_logits[-1])
    print("last prompt position top-5:", last_top5)

    out = {
        "model": {
            "file": os.path.basename(path),
            "sha256": sha,
            "config": cfg,
            "note": "weights as dequantized from the GGUF (Q8_0 embedding, Q4_1 matrices, F32 norms); "
                    "forward in float64; q/k un-permuted to HF rotate-half order unless stated",
        },
        "tokenizer": {
            "built_from": "GGUF metadata (weights.md §5.1 step 6); encode(add_special_tokens=False)",
            "cases": [{"text": s, **v} for s, v in tok_facts.items()],
        },
        "perplexity": {
            "text": PARAGRAPH,
            "ids": para_ids,
            "num_tokens": len(para_ids),
            "definition": "exp(mean NLL of token t given tokens 0..t-1, t = 1..n-1); no BOS added",
            "with_unpermute": ppl,
            "without_unpermute": ppl_np,
            "mean_nll_with_unpermute": nll,
            "mean_nll_without_unpermute": nll_np,
        },
        "greedy": {
            "prompt": CHAT_PROMPT,
            "prompt_ids": chat_ids,
            "max_new_tokens": N_GREEDY,
            "stop_at_eos": EOS,
            "new_ids": new,
            "text": text,
        },
        "logits_first_positions": {
            "prompt_ids": chat_ids,
            "last_position": len(chat_ids) - 1,
            "last_position_top5": last_top5,
            "first_positions_top5": [top5(first_logits[p]) for p in range(4)],
        },
        "versions": {"numpy": np.__version__, "gguf": "0.19.0", "tokenizers": tokenizers.__version__},
    }
    with open(os.path.join(HERE, "smollm2.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {os.path.join(HERE, 'smollm2.json')} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
