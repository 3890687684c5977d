"""Generate tiny random Llama fixtures (HF model folders) and their reference logits.

Produces, next to this script (assets/tiny/):
  llama-gqa/          config.json + model.safetensors, float32
  llama-gqa-f16/      same weights stored as float16 (config torch_dtype "float16")
  llama-gqa-bf16/     same weights stored as bfloat16 (round-to-nearest-even; file written by hand,
                      since safetensors.numpy has no bf16), config torch_dtype "bfloat16"
  llama-gqa-sharded/  float32, split across model-00001-of-00002.safetensors and
                      model-00002-of-00002.safetensors + model.safetensors.index.json
  llama-tied/         same weights minus lm_head.weight, tie_word_embeddings true (float32)
  reference.json      per folder: {"sequences", "logits" [seq][pos][vocab], "greedy_next" [seq]}

Config: vocab 256, hidden 64, intermediate 128, 2 layers, 4 heads / 2 KV heads (GQA), head_dim 16,
rms_norm_eps 1e-5, rope_theta 10000, untied lm_head (except llama-tied).
Weights: numpy default_rng(seed=0), drawn in the fixed order of `tensor_names()`; linear/embedding
weights ~ N(0, 0.1^2), norm weights 1 + 0.1*N(0, 1).

Reference logits come from the independent float64 numpy forward in llama_ref.py. For the f16/bf16
folders they are computed from the weights AFTER rounding to that dtype (cast back to float64), i.e. what
a loader sees. Floats are written with Python repr (full double precision).

Run:  python3 assets/tiny/make_tiny.py          (from anywhere; ~1 s, deterministic)
Versions used: Python 3.11.7, numpy 2.4.6, safetensors 0.8.0.
"""

import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama_ref import llama_forward  # noqa: E402

SEED = 0
SEQUENCES = [[1, 17, 42, 99, 3, 250, 7, 128], [1, 5, 5, 5, 200, 31]]

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "attention_bias": False,
    "mlp_bias": False,
    "torch_dtype": "float32",
}


def tensor_names_shapes(cfg):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    out = [("model.embed_tokens.weight", (V, H))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (nh * hd, H)),
            (p + "self_attn.k_proj.weight", (nkv * hd, H)),
            (p + "self_attn.v_proj.weight", (nkv * hd, H)),
            (p + "self_attn.o_proj.weight", (H, nh * hd)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "mlp.gate_proj.weight", (I, H)),
            (p + "mlp.up_proj.weight", (I, H)),
            (p + "mlp.down_proj.weight", (H, I)),
        ]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return out


def make_weights(cfg, seed=SEED):
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in tensor_names_shapes(cfg):
        x = rng.standard_normal(shape)
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * x
        else:
            x = 0.1 * x
        w[name] = x.astype(np.float32)
    return w


def f32_to_bf16_bits(a):
    """float32 -> bfloat16 bit pattern (uint16), round-to-nearest-even. (No NaN/Inf in our data.)"""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_safetensors_raw(path, tensors, metadata=None):
    """Write a safetensors file by hand. tensors: name -> (dtype_str, shape, raw_bytes).

    Format: u64 little-endian header length N, N bytes of JSON header
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} (padded with spaces
    to a multiple of 8), then the concatenated little-endian tensor bytes.
    """
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors_raw(path):
    """Minimal reader (used to verify the bf16 file): name -> np.ndarray (bf16 returned as float32)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    np_dtypes = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=np_dtypes[info["dtype"]]).reshape(info["shape"])
        out[name] = bf16_bits_to_f32(arr) if info["dtype"] == "BF16" else arr
    return out


def write_config(folder, cfg):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def reference_for(weights64, cfg):
    logits, greedy = [], []
    for seq in SEQUENCES:
        lg = llama_forward(weights64, cfg, seq, dtype=np.float64)
        logits.append([[float(v) for v in row] for row in lg])
        greedy.append(int(np.argmax(lg[-1])))
    return {"sequences": SEQUENCES, "logits": logits, "greedy_next": greedy}


def main():
    meta = {"format": "pt"}
    w32 = make_weights(CONFIG)
    refs = {}

    # --- llama-gqa (f32) ---
    d = os.path.join(HERE, "llama-gqa")
    write_config(d, CONFIG)
    save_file(w32, os.path.join(d, "model.safetensors"), metadata=meta)
    refs["llama-gqa"] = reference_for({k: v.astype(np.float64) for k, v in w32.items()}, CONFIG)

    # --- llama-gqa-f16 ---
    d = os.path.join(HERE, "llama-gqa-f16")
    cfg = dict(CONFIG, torch_dtype="float16")
    write_config(d, cfg)
    w16 = {k: v.astype(np.float16) for k, v in w32.items()}
    save_file(w16, os.path.join(d, "model.safetensors"), metadata=meta)
    refs["llama-gqa-f16"] = reference_for({k: v.astype(np.float64) for k, v in w16.items()}, cfg)

    # --- llama-gqa-bf16 (hand-written safetensors) ---
    d = os.path.join(HERE, "llama-gqa-bf16")
    cfg = dict(CONFIG, torch_dtype="bfloat16")
    write_config(d, cfg)
    wbf_bits = {k: f32_to_bf16_bits(v) for k, v in w32.items()}
    write_safetensors_raw(
        os.path.join(d, "model.safetensors"),
        {k: ("BF16", v.shape, v.astype("<u2").tobytes()) for k, v in wbf_bits.items()},
        metadata=meta,
    )
    wbf = {k: bf16_bits_to_f32(v) for k, v in wbf_bits.items()}
    back = read_safetensors_raw(os.path.join(d, "model.safetensors"))
    assert set(back) == set(wbf) and all(np.array_equal(back[k], wbf[k]) for k in wbf)
    refs["llama-gqa-bf16"] = reference_for({k: v.astype(np.float64) for k, v in wbf.items()}, cfg)

    # --- llama-gqa-sharded (f32, 2 shards) ---
    d = os.path.join(HERE, "llama-gqa-sharded")
    write_config(d, CONFIG)
    names = [n for n, _ in tensor_names_shapes(CONFIG)]
    shard1 = [n for n in names if n == "model.embed_tokens.weight" or n.startswith("model.layers.0.")]
    shard2 = [n for n in names if n not in shard1]
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for fname, group in zip(files, [shard1, shard2]):
        save_file({n: w32[n] for n in group}, os.path.join(d, fname), metadata=meta)
        weight_map.update({n: fname for n in group})
    total = sum(w32[n].nbytes for n in names)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    refs["llama-gqa-sharded"] = reference_for({k: v.astype(np.float64) for k, v in w32.items()}, CONFIG)

    # --- llama-tied (f32, no lm_head) ---
    d = os.path.join(HERE, "llama-tied")
    cfg = dict(CONFIG, tie_word_embeddings=True)
    write_config(d, cfg)
    wt = {k: v for k, v in w32.items() if k != "lm_head.weight"}
    save_file(wt, os.path.join(d, "model.safetensors"), metadata=meta)
    refs["llama-tied"] = reference_for({k: v.astype(np.float64) for k, v in wt.items()}, cfg)

    # Round-trip checks of what was written.
    for name in ["llama-gqa", "llama-gqa-f16", "llama-tied"]:
        loaded = load_file(os.path.join(HERE, name, "model.safetensors"))
        assert len(loaded) == (len(w32) - 1 if name == "llama-tied" else len(w32))

    with open(os.path.join(HERE, "reference.json"), "w") as f:
        # json writes floats with repr(): the shortest string that round-trips the double exactly.
        json.dump(refs, f, separators=(",", ":"))
        f.write("\n")

    # Summary.
    print(f"seed {SEED}, {len(w32)} tensors, {sum(v.size for v in w32.values())} params")
    base = np.array(refs["llama-gqa"]["logits"][0])
    for name, r in refs.items():
        diffs = [np.abs(np.array(r["logits"][i]) - np.array(refs["llama-gqa"]["logits"][i])).max()
                 for i in range(len(SEQUENCES))] if name != "llama-tied" else None
        print(f"{name:20s} greedy_next={r['greedy_next']}  logits[0][0][:3]={r['logits'][0][0][:3]}"
              + (f"  max|d vs f32|={max(diffs):.3g}" if diffs is not None else ""))
    print("logits[0] last-position range:", base[-1].min(), base[-1].max())


if __name__ == "__main__":
    main()
