#!/usr/bin/env python3
"""Write a TinyLlama-1.1B-shaped HF Llama folder with random weights (speed does not depend on values).

  make_random_llama.py [DST_DIR] [--shape tinyllama|smollm2]   default /work/main/models/bench/tinyllama-random

--shape smollm2 writes the SmolLM2-135M shape instead (576 hidden, 30 layers, 9 query / 3 KV heads, vocab 49152,
tied embeddings, f16 ~270 MB): the GPU benchmark (scripts/bench/gpu.sh) uses it where the real GGUF cannot travel.

Writes config.json, model.safetensors (float16, ~2.2 GB; loaders upcast to f32), tokenizer.json (a trivial WordLevel
tokenizer, "t0".."t31999", unk "t0", whitespace pre-tokenizer) and tokenizer_config.json. The safetensors file is
streamed one tensor at a time, so peak memory stays around one tensor (~0.3 GB).
For the GGUF -> f32 HF conversion of SmolLM2, see gguf_to_hf.py beside this file.
"""
import json
import os
import sys

import numpy as np

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "initializer_range": 0.02,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float16",
}

# SmolLM2-135M-Instruct's shape (its config.json; the GGUF's metadata agrees)
SMOLLM2 = dict(CONFIG, vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
               max_position_embeddings=8192, tie_word_embeddings=True)


def tensor_specs(c):
    """(name, shape, kind) in HF naming; kind 'norm' -> ones, else N(0, 0.02)."""
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    specs = [("model.embed_tokens.weight", (v, h), "w")]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        specs += [
            (p + "input_layernorm.weight", (h,), "norm"),
            (p + "self_attn.q_proj.weight", (q, h), "w"),
            (p + "self_attn.k_proj.weight", (kv, h), "w"),
            (p + "self_attn.v_proj.weight", (kv, h), "w"),
            (p + "self_attn.o_proj.weight", (h, q), "w"),
            (p + "post_attention_layernorm.weight", (h,), "norm"),
            (p + "mlp.gate_proj.weight", (i, h), "w"),
            (p + "mlp.up_proj.weight", (i, h), "w"),
            (p + "mlp.down_proj.weight", (h, i), "w"),
        ]
    specs.append(("model.norm.weight", (h,), "norm"))
    if not c["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (v, h), "w"))
    return specs


def write_safetensors_streaming(path, specs, make, dtype=np.float16, dtype_name="F16"):
    """safetensors layout: u64 LE header length, JSON header (offsets into the data), then raw data."""
    itemsize = np.dtype(dtype).itemsize
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": dtype_name, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)  # align the data to 8 bytes
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for k, (name, shape, kind) in enumerate(specs):
            a = np.ascontiguousarray(make(name, shape, kind), dtype=dtype)
            assert a.shape == tuple(shape), (name, a.shape, shape)
            f.write(a.tobytes())
            if k % 20 == 0:
                print(f"  {k + 1}/{len(specs)} {name}", file=sys.stderr)
    os.replace(tmp, path)
    return 8 + len(hb) + off


def wordlevel_tokenizer(vocab_size):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {f"t{i}": i for i in range(vocab_size)}, "unk_token": "t0"},
    }


def main():
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return
    config = CONFIG
    if "--shape" in args:
        at = args.index("--shape")
        shape = args[at + 1] if at + 1 < len(args) else ""
        if shape not in ("tinyllama", "smollm2"):
            sys.exit(f"make_random_llama.py: --shape takes tinyllama or smollm2, not {shape!r}")
        config = SMOLLM2 if shape == "smollm2" else CONFIG
        del args[at:at + 2]
    dst = args[0] if args else "/work/main/models/bench/tinyllama-random"
    os.makedirs(dst, exist_ok=True)
    rng = np.random.default_rng(1234)

    def make(name, shape, kind):
        if kind == "norm":
            return np.ones(shape, np.float16)
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    n = write_safetensors_streaming(os.path.join(dst, "model.safetensors"), tensor_specs(config), make)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(dst, "tokenizer.json"), "w") as f:
        json.dump(wordlevel_tokenizer(config["vocab_size"]), f)
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "t0", "bos_token": "t1",
                   "eos_token": "t2", "model_max_length": 2048}, f, indent=2)
    params = sum(int(np.prod(s)) for _, s, _ in tensor_specs(config))
    print(f"wrote {dst}: {params:,} parameters, model.safetensors {n:,} bytes (f16)")


if __name__ == "__main__":
    main()
