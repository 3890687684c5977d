#!/usr/bin/env python3
"""Write a GGUF of an HF Llama folder (the random TinyLlama of make_random_llama.py), for llama.cpp.

  hf_to_gguf.py SRC_DIR DST.gguf [--type f32|f16|q8_0|q4_1]

The weights are SRC's values (make_random_llama.py stores f16; umi upcasts the same values to f32 at
load and quantizes them with --quant q8_0 / q4_1, as this script does with gguf-py's reference
quantizers, GGML's Q8_0 and Q4_1), so umi and llama.cpp multiply the same numbers. Every 2-D weight
takes --type (the embedding and the LM head included); norms stay f32. q_proj and k_proj are permuted
to llama.cpp's rotary layout, as llama.cpp's convert_hf_to_gguf.py does. The vocabulary is a stand-in
of SRC's size that llama.cpp's loader accepts (<unk>, <s>, </s>, the 256 byte tokens, then "▁t<i>"):
the benchmark feeds token ids, never text. Peak memory is about one tensor (~0.5 GB in f32).
"""
import argparse
import json
import os
import sys

import gguf
import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_to_hf import HF_NAMES  # noqa: E402

TYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, None),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, None),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
    "q4_1": (gguf.LlamaFileType.MOSTLY_Q4_1, gguf.GGMLQuantizationType.Q4_1),
}

# HF layer tensor -> GGUF, the inverse of gguf_to_hf.py's table (one table for both converters)
LAYER = {f"{hf}.weight": f"{g}.weight" for g, hf in HF_NAMES.items()}


def permute(w, heads):
    """HF's rotate-half rows to llama.cpp's interleaved pairs (convert_hf_to_gguf.py's permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(name):
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")  # model.layers.<i>.<rest>
    if parts[:2] == ["model", "layers"]:
        rest = ".".join(parts[3:])
        if rest in LAYER:
            return f"blk.{parts[2]}.{LAYER[rest]}"
    raise SystemExit(f"hf_to_gguf.py: no GGUF name for tensor {name!r}")


def vocabulary(n):
    tokens, types = ["<unk>", "<s>", "</s>"], [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(len(tokens), n)]
    types += [gguf.TokenType.NORMAL] * (n - len(types))
    return tokens[:n], types[:n]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--type", choices=sorted(TYPES), default="f32")
    a = p.parse_args()
    cfg = json.load(open(os.path.join(a.src, "config.json")))
    if cfg.get("tie_word_embeddings"):
        raise SystemExit("hf_to_gguf.py: tied embeddings are not handled (the TinyLlama shape has a separate head)")
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    file_type, qtype = TYPES[a.type]

    w = gguf.GGUFWriter(a.dst, "llama")
    w.add_name(os.path.basename(os.path.normpath(a.src)))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_file_type(file_type)
    tokens, types = vocabulary(cfg["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_unk_token_id(0)

    with safe_open(os.path.join(a.src, "model.safetensors"), "np") as f:
        names = list(f.keys())
        for name in names:
            t = f.get_tensor(name).astype(np.float32)
            if name.endswith("q_proj.weight"):
                t = permute(t, heads)
            elif name.endswith("k_proj.weight"):
                t = permute(t, kv_heads)
            out = gguf_name(name)
            if t.ndim > 1 and qtype is not None:
                q = gguf.quants.quantize(t, qtype)
                w.add_tensor(out, q, raw_shape=q.shape, raw_dtype=qtype)
            elif t.ndim > 1 and a.type == "f16":
                w.add_tensor(out, t.astype(np.float16))
            else:
                w.add_tensor(out, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=True)
    w.close()
    print(f"wrote {a.dst} ({a.type}, {os.path.getsize(a.dst):,} bytes, {len(names)} tensors)")


if __name__ == "__main__":
    main()
