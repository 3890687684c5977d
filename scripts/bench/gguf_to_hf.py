#!/usr/bin/env python3
"""Convert the SmolLM2 GGUF (Q4_1/Q8_0/F32) for the peers, following shared/docs/weights.md section 5.

  gguf_to_hf.py SRC.gguf DST_DIR                      f32 HF folder (config.json + model.safetensors) for transformers
  gguf_to_hf.py SRC.gguf --gguf-out DST.gguf [--type f32|f16|q8_0]
                                                      dequantized GGUF (same metadata, llama.cpp tensor order) for llama.cpp

HF folder: every tensor dequantized with gguf.quants.dequantize, reshaped to (out, in), q/k rows un-permuted back to
HF's rotate-half layout (view (heads, head_dim/2, 2, in), swap the middle axes), renamed, tied embeddings (no lm_head).
No tokenizer is written: the benchmark feeds token ids directly.
"""
import argparse
import json
import os
import re

import numpy as np
import gguf
from gguf.quants import dequantize


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def load_dequantized(path):
    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        out[t.name] = a.reshape([int(x) for x in reversed(t.shape)])
    return r, out


def unpermute(w, n_heads):
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


HF_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def to_hf(src, dst):
    from safetensors.numpy import save_file
    r, ts = load_dequantized(src)
    arch = field(r, "general.architecture")
    assert arch == "llama", arch
    g = lambda k: field(r, f"llama.{k}")
    n_head, n_kv = int(g("attention.head_count")), int(g("attention.head_count_kv"))
    hidden = int(g("embedding_length"))
    tok = field(r, "tokenizer.ggml.tokens")
    vocab = int(g("vocab_size") or len(tok))
    hf = {}
    for name, a in ts.items():
        if name == "token_embd.weight":
            hf["model.embed_tokens.weight"] = a
        elif name == "output_norm.weight":
            hf["model.norm.weight"] = a
        elif name == "output.weight":
            hf["lm_head.weight"] = a
        else:
            m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", name)
            assert m, name
            kind = m.group(2)
            if kind == "attn_q":
                a = unpermute(a, n_head)
            elif kind == "attn_k":
                a = unpermute(a, n_kv)
            hf[f"model.layers.{m.group(1)}.{HF_NAMES[kind]}.weight"] = a
    tied = "lm_head.weight" not in hf
    bos, eos = field(r, "tokenizer.ggml.bos_token_id"), field(r, "tokenizer.ggml.eos_token_id")
    pad = field(r, "tokenizer.ggml.padding_token_id")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": int(g("block_count")), "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head, "hidden_act": "silu",
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")), "rope_theta": float(g("rope.freq_base")),
        "max_position_embeddings": int(g("context_length")), "tie_word_embeddings": tied,
        "attention_bias": False, "mlp_bias": False, "bos_token_id": bos, "eos_token_id": eos,
        "pad_token_id": pad, "torch_dtype": "float32",
    }
    os.makedirs(dst, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in hf.items()}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    n = sum(v.size for v in hf.values())
    print(f"wrote {dst}: {len(hf)} tensors, {n:,} parameters, f32, tied={tied}")


def to_gguf(src, dst, typ):
    r, ts = load_dequantized(src)
    arch = field(r, "general.architecture")
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), vtype, sub_type=sub)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[typ])
    for t in r.tensors:  # keep the file's order; llama.cpp layout (no un-permute)
        a = ts[t.name]
        if typ == "f16" and a.ndim > 1:
            a = a.astype(np.float16)
        if typ == "q8_0" and a.ndim > 1:
            # the same values umi's --quant q8_0 makes from the f32 weights (GGML's Q8_0)
            q = gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            continue
        w.add_tensor(t.name, np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {dst} ({typ}, {os.path.getsize(dst):,} bytes)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst", nargs="?")
    p.add_argument("--gguf-out")
    p.add_argument("--type", choices=["f32", "f16", "q8_0"], default="f32")
    a = p.parse_args()
    if a.gguf_out:
        to_gguf(a.src, a.gguf_out, a.type)
    if a.dst:
        to_hf(a.src, a.dst)
    if not (a.gguf_out or a.dst):
        p.error("give DST_DIR and/or --gguf-out")


if __name__ == "__main__":
    main()
