"""Tiny Llama GGUF fixtures for the umi GGUF loader tests (written with llama.cpp's `gguf` package).

Re-run (from the repository root):
    python3 -m pip install numpy gguf safetensors sentencepiece protobuf   # sentencepiece optional
    python3 assets/reference/make_gguf_fixtures.py
Generated with Python 3.11.7, numpy 2.4.6, gguf 0.19.0, safetensors (numpy backend), sentencepiece 0.2.3.

Weights come from assets/tiny/llama-gqa/model.safetensors + config.json (polled for up to 20 min
if absent; if it never appears, seeded random weights with the same config are used, and
reference.json says so). Config: vocab 256, hidden 64, intermediate 128, 2 layers, 4 heads,
2 kv heads, head_dim 16, rope_theta 1e4, rms eps 1e-5, 128 positions, untied lm_head.

Conventions follow llama.cpp convert_hf_to_gguf.py (LlamaModel):
  * HF -> GGUF names: model.embed_tokens -> token_embd, model.layers.N.input_layernorm -> blk.N.attn_norm,
    self_attn.{q,k,v,o}_proj -> blk.N.attn_{q,k,v,output}, post_attention_layernorm -> blk.N.ffn_norm,
    mlp.{gate,up,down}_proj -> blk.N.ffn_{gate,up,down}, model.norm -> output_norm, lm_head -> output.
  * q_proj / k_proj rows are permuted (n_head = num_attention_heads for q, num_key_value_heads for k):
        permute(w, n) = w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    i.e. within each head, HF's rotate-half order [x0..x7, x8..x15] becomes interleaved
    [x0, x8, x1, x9, ...] (GGML's "normal" RoPE on adjacent pairs). The inverse is
        unpermute(w, n) = w.reshape(n, w.shape[0] // n // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
  * Tensors are handed to GGUFWriter as numpy arrays in HF (out, in) order; the writer stores
    dims reversed (ne[0] = in, ne[1] = out), as GGML expects. Quantized tensors are passed as
    uint8 arrays (out, in / block_size * type_size) with raw_dtype set.
  * 2-D weights are quantized (Q8_0 / Q4_0 / Q4_1 via gguf.quants.quantize); 1-D norms stay F32.

Outputs (assets/tiny/gguf/): see README.md there. reference.json holds, per file, the dequantized
and UN-permuted (HF order) tensors' checksums keyed by HF name.
"""

import hashlib
import json
import os
import struct
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType, TokenType

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC_DIR = os.path.join(ROOT, "assets", "tiny", "llama-gqa")
OUT_DIR = os.path.join(ROOT, "assets", "tiny", "gguf")
BAD_DIR = os.path.join(OUT_DIR, "bad")

DEFAULT_CFG = {
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5, "max_position_embeddings": 128, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2,
}
# Smaller model used only as the base of the bad/ files (so each stays < 50 KB).
MICRO_CFG = dict(DEFAULT_CFG, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16)


# --------------------------------------------------------------------------------------------
# GGUF writer quirk: GGUFWriter.add_array silently skips empty lists and _pack_val raises on an
# empty array, but llama.cpp's gpt2 vocab loader requires the tokenizer.ggml.merges key to
# exist. Patch _pack_val so an empty array is written as (type STRING, count 0).
_orig_pack_val = gguf.GGUFWriter._pack_val


def _pack_val_allow_empty(self, val, vtype, add_vtype, sub_type=None):
    if vtype == GGUFValueType.ARRAY and isinstance(val, (list, tuple)) and len(val) == 0:
        out = bytearray()
        if add_vtype:
            out += self._pack("I", vtype)
        out += self._pack("I", sub_type if sub_type is not None else GGUFValueType.STRING)
        out += self._pack("Q", 0)
        return bytes(out)
    return _orig_pack_val(self, val, vtype, add_vtype, sub_type)


gguf.GGUFWriter._pack_val = _pack_val_allow_empty


# --------------------------------------------------------------------------------------------
def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_to_gguf_name(name):
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")
    assert parts[0] == "model" and parts[1] == "layers", name
    i, rest = parts[2], ".".join(parts[3:])
    m = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }[rest]
    return f"blk.{i}.{m}"


def hf_order(cfg):
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                  p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight",
                  p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]
    names += ["model.norm.weight", "lm_head.weight"]
    return names


def random_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
            p + "self_attn.q_proj.weight": (nh * hd, H), p + "self_attn.k_proj.weight": (nkv * hd, H),
            p + "self_attn.v_proj.weight": (nkv * hd, H), p + "self_attn.o_proj.weight": (H, nh * hd),
            p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H), p + "mlp.down_proj.weight": (H, I),
        })
    out = {}
    for n in hf_order(cfg):
        s = shapes[n]
        if len(s) == 1:
            out[n] = (1.0 + 0.1 * rng.standard_normal(s)).astype(np.float32)
        else:
            out[n] = (rng.standard_normal(s) / np.sqrt(s[1])).astype(np.float32)
    return out


def load_source(poll_s=20 * 60, every_s=30):
    st = os.path.join(SRC_DIR, "model.safetensors")
    cj = os.path.join(SRC_DIR, "config.json")
    deadline = time.time() + poll_s
    while not (os.path.exists(st) and os.path.exists(cj)):
        if time.time() >= deadline:
            print("WARNING: llama-gqa safetensors not found; using seeded random weights", file=sys.stderr)
            return dict(DEFAULT_CFG), random_weights(DEFAULT_CFG, 1234), None
        print(f"waiting for {st} ...", file=sys.stderr)
        time.sleep(every_s)
    time.sleep(2)  # let a concurrent writer finish
    from safetensors.numpy import load_file
    with open(cj) as f:
        cfg = json.load(f)
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "head_dim"):
        assert cfg[k] == DEFAULT_CFG[k], (k, cfg[k])
    w = {k: np.asarray(v, dtype=np.float32) for k, v in load_file(st).items()}
    with open(st, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return cfg, w, sha


# --------------------------------------------------------------------------------------------
# Tokenizers
def bytes_to_unicode():
    """GPT-2's byte -> printable unicode char table (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def gpt2_vocab(n_tokens=256):
    b2u = bytes_to_unicode()
    toks, types = [], []
    for i in range(n_tokens):
        if i < 3:
            toks.append(["<unk>", "<s>", "</s>"][i])
            types.append(TokenType.CONTROL)  # 3
        else:
            toks.append(b2u[i])  # id i = byte i (bytes 0x00..0x02 are not representable)
            types.append(TokenType.NORMAL)  # 1
    return toks, types


def spm_vocab():
    toks = ["<unk>", "<s>", "</s>", "▁", "▁t", "he", "▁the", "▁a", "in", "er", "on"]
    toks += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    toks += [str(d) for d in range(10)]
    toks += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    toks += ["an", "re", "nd", "at", "en", "es", "or", "ing", "▁s", "▁w", "▁o", "▁b", "▁c", "▁m",
             "▁f", "▁p", "ed", "is", "it", "al", "ar", "ou", "le"]
    n_plain = len(toks)
    toks += [f"<0x{b:02X}>" for b in range(256 - n_plain)]  # byte-fallback tokens <0x00>..<0x7F>
    assert len(toks) == 256 and len(set(toks)) == 256, (len(toks), len(set(toks)))
    types = []
    for i, t in enumerate(toks):
        if i == 0:
            types.append(TokenType.UNKNOWN)  # 2
        elif i < 3:
            types.append(TokenType.CONTROL)  # 3
        elif t.startswith("<0x"):
            types.append(TokenType.BYTE)  # 6
        else:
            types.append(TokenType.NORMAL)  # 1
    scores = [float(-i) for i in range(256)]
    # consistency: every multi-char normal token can be built from two shorter tokens in the vocab
    vs = set(toks)
    for t, ty in zip(toks, types):
        if ty == TokenType.NORMAL and len(t) > 1:
            assert any(t[:k] in vs and t[k:] in vs for k in range(1, len(t))), t
    return toks, types, scores


def spm_expected(toks, types, scores):
    """Expected SPM ids from Google's `sentencepiece` (independent of llama.cpp / umi), if installed.

    A BPE ModelProto is built from the same pieces + scores (identity normalizer, add_dummy_prefix,
    escape_whitespaces). sentencepiece refuses byte pieces unless all 256 exist, so the <0xXX> pieces
    are marked UNUSED and byte_fallback is off; hence only texts whose characters are all normal
    pieces (no byte fallback involved) are recorded. ids exclude the BOS that add_bos_token adds.
    """
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:
        return {"note": "sentencepiece not installed; no expected ids recorded", "cases": []}
    mp = pb.ModelProto()
    for t, ty, sc in zip(toks, types, scores):
        p = mp.pieces.add()
        p.piece, p.score = t, sc
        p.type = 5 if int(ty) == int(TokenType.BYTE) else int(ty)  # BYTE -> UNUSED
    mp.trainer_spec.model_type = pb.TrainerSpec.BPE
    mp.trainer_spec.vocab_size = len(toks)
    mp.trainer_spec.byte_fallback = False
    mp.trainer_spec.unk_id, mp.trainer_spec.bos_id, mp.trainer_spec.eos_id, mp.trainer_spec.pad_id = 0, 1, 2, -1
    mp.normalizer_spec.name = "identity"
    mp.normalizer_spec.add_dummy_prefix = True
    mp.normalizer_spec.remove_extra_whitespaces = False
    mp.normalizer_spec.escape_whitespaces = True
    sp = spm.SentencePieceProcessor(model_proto=mp.SerializeToString())
    cases = []
    for text in ["the cat", "Hello world", "a  b", "the other thing"]:
        ids = sp.encode(text)
        assert 0 not in ids, (text, ids)  # no unk => byte fallback would not have been involved
        cases.append({"text": text, "ids": ids, "pieces": [toks[i] for i in ids]})
    return {"tool": f"sentencepiece {spm.__version__} (BPE ModelProto from the same pieces/scores)",
            "note": "ids without BOS; with add_bos_token the sequence is [1] + ids; space prefix added",
            "cases": cases}


def dump_json(obj, path):
    """Indented JSON, but dicts/lists holding only scalars (or lists of scalars) go on one line."""
    def flat(o):
        if isinstance(o, dict):
            return all(not isinstance(v, dict) for v in o.values())
        return isinstance(o, list) and all(not isinstance(v, (dict, list)) for v in o)

    def enc(o, ind):
        if flat(o) or not isinstance(o, (dict, list)):
            return json.dumps(o, ensure_ascii=False)
        pad = " " * (ind + 1)
        if isinstance(o, dict):
            items = [f"{pad}{json.dumps(k)}: {enc(v, ind + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
        items = [pad + enc(v, ind + 1) for v in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * ind + "]"

    with open(path, "w", encoding="utf-8") as f:
        f.write(enc(obj, 0) + "\n")
    json.load(open(path, encoding="utf-8"))  # round-trip check


# --------------------------------------------------------------------------------------------
FILE_TYPE = {T.F32: 0, T.Q8_0: 7, T.Q4_0: 2, T.Q4_1: 3}


def write_gguf(path, cfg, weights, qtype, tokenizer="gpt2", n_tok=None, drop=(), shape_override=None,
               name="umi-tiny-llama-gqa"):
    """weights: HF-named float32 arrays (HF order, not yet permuted)."""
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(path, "llama")  # writes general.architecture = "llama"
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(FILE_TYPE[qtype])
    if qtype != T.F32:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    if tokenizer == "gpt2":
        toks, types = gpt2_vocab(n_tok or 256)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(toks)
        w.add_token_types(types)
        w.add_key_value(gguf.Keys.Tokenizer.MERGES, [], GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(False)
    else:
        toks, types, scores = spm_vocab()
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(toks)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)

    for hf in hf_order(cfg):
        if hf in drop:
            continue
        g = hf_to_gguf_name(hf)
        t = weights[hf]
        if hf.endswith("self_attn.q_proj.weight"):
            t = permute(t, nh)
        elif hf.endswith("self_attn.k_proj.weight"):
            t = permute(t, nkv)
        if shape_override and hf in shape_override:
            t = t[: shape_override[hf][0], : shape_override[hf][1]]
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim == 2 and qtype != T.F32:
            q = gguf.quants.quantize(t, qtype)
            w.add_tensor(g, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(g, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_back(path, cfg, weights, qtype, tol):
    """Read with GGUFReader, dequantize, un-permute, compare to the HF weights; return checksums."""
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    by_g = {t.name: t for t in r.tensors}
    out = {}
    for hf in hf_order(cfg):
        g = hf_to_gguf_name(hf)
        t = by_g[g]
        ref = weights[hf]
        ne = [int(x) for x in t.shape]
        assert ne == list(reversed(ref.shape)), (g, ne, ref.shape)  # GGUF dims are reversed
        x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        x = x.reshape(ref.shape)
        if hf.endswith("q_proj.weight"):
            assert not np.allclose(x, ref, atol=tol)  # file really holds the permuted rows
            x = unpermute(x, nh)
        elif hf.endswith("k_proj.weight"):
            x = unpermute(x, nkv)
        err = float(np.max(np.abs(x - ref)))
        assert err <= tol, (path, hf, err)
        if ref.ndim == 1 or qtype == T.F32:
            assert t.tensor_type == T.F32
        else:
            assert t.tensor_type == qtype
        x64 = x.astype(np.float64)
        out[hf] = {
            "gguf_name": g,
            "ggml_type": t.tensor_type.name,
            "ne": ne,
            "shape": list(ref.shape),
            "sum": float(x64.sum()),
            "sum_abs": float(np.abs(x64).sum()),
            "first8": [float(v) for v in x.reshape(-1)[:8]],
            "max_abs_err_vs_hf": err,
        }
    return out


def tensor_type_field_offset(path, tensor_name):
    """Byte offset of the u32 ggml type in `tensor_name`'s tensor-info record (found via GGUFReader)."""
    r = gguf.GGUFReader(path)
    t = next(t for t in r.tensors if t.name == tensor_name)
    # field.parts = [name_len u64, name bytes, n_dims u32, dims u64[n], type u32, offset u64]
    off = t.field.offset + sum(int(np.asarray(x).nbytes) for x in t.field.parts[:4])
    with open(path, "rb") as f:
        data = f.read()
    # Independent manual computation: find the record by its name string and skip n_dims + dims.
    nb = tensor_name.encode()
    key = struct.pack("<Q", len(nb)) + nb
    pos = data.find(key)
    assert pos >= 0 and data.find(key, pos + 1) < 0
    p = pos + len(key)
    n_dims = struct.unpack_from("<I", data, p)[0]
    p += 4 + 8 * n_dims
    assert struct.unpack_from("<I", data, p)[0] == int(t.tensor_type)
    assert off == p, (off, p)
    return p, n_dims


def stats(path):
    return os.path.getsize(path)


def main():
    os.makedirs(BAD_DIR, exist_ok=True)
    cfg, weights, sha = load_source()
    assert set(weights) == set(hf_order(cfg)), sorted(set(weights) ^ set(hf_order(cfg)))

    # sanity: permute / unpermute are inverse, and permute matches the documented interleave
    for n in (cfg["num_attention_heads"], cfg["num_key_value_heads"]):
        a = np.arange(n * 16 * 3, dtype=np.float32).reshape(n * 16, 3)
        assert np.array_equal(unpermute(permute(a, n), n), a)
    rows = permute(np.arange(16).reshape(16, 1), 1)[:, 0].tolist()
    assert rows == [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15], rows

    ref = {
        "_source": {
            "safetensors": "assets/tiny/llama-gqa/model.safetensors" if sha else None,
            "safetensors_sha256": sha,
            "random_fallback_seed": None if sha else 1234,
            "note": "checksums are of the GGUF tensors after dequantization to f32 and un-permuting "
                    "attn_q/attn_k back to HF row order; keys are HF tensor names; shape is HF [out, in]; "
                    "ne is the GGUF dims order; sums are float64 sums of the f32 values",
        }
    }
    files = [("tiny-f32.gguf", T.F32, "gpt2", 0.0), ("tiny-q8_0.gguf", T.Q8_0, "gpt2", 0.02),
             ("tiny-q4_0.gguf", T.Q4_0, "gpt2", 0.35), ("tiny-q4_1.gguf", T.Q4_1, "gpt2", 0.25),
             ("tiny-spm.gguf", T.F32, "spm", 0.0)]
    for fname, qt, tok, tol in files:
        path = os.path.join(OUT_DIR, fname)
        write_gguf(path, cfg, weights, qt, tokenizer=tok)
        ref[fname] = {"tensors": read_back(path, cfg, weights, qt, tol)}
        print(f"{fname:18s} {qt.name:5s} {stats(path):8d} bytes")

    # tokenizer records
    g_toks, _ = gpt2_vocab()
    ref["tiny-f32.gguf"]["tokenizer"] = {
        "model": "gpt2", "n_tokens": 256, "merges": [], "bos": 1, "eos": 2, "unk": 0,
        "note": "ids 0,1,2 = <unk>,<s>,</s> (control); id i>=3 = GPT-2 byte-level char of byte i; "
                "no merges, so a byte-level BPE encodes text as its UTF-8 bytes (bytes 0..2 unencodable). "
                "Same tokenizer in tiny-q8_0/q4_0/q4_1 and bad/*.",
    }
    s_toks, s_types, s_scores = spm_vocab()
    ref["tiny-spm.gguf"]["tokenizer"] = {
        "model": "llama", "tokens": s_toks, "token_types": [int(t) for t in s_types], "scores": s_scores,
        "bos": 1, "eos": 2, "unk": 0, "add_bos_token": True,
        "expected": spm_expected(s_toks, s_types, s_scores),
    }

    # ---------------- bad files ----------------
    micro = dict(MICRO_CFG)
    mw = random_weights(micro, 77)
    base = os.path.join(BAD_DIR, "base-micro.gguf")
    write_gguf(base, micro, mw, T.Q8_0, name="umi-micro-llama")
    ref["bad/base-micro.gguf"] = {"tensors": read_back(base, micro, mw, T.Q8_0, 0.02)}

    # truncated: tiny-f32.gguf cut in the middle of the tensor data (inside token_embd)
    src = open(os.path.join(OUT_DIR, "tiny-f32.gguf"), "rb").read()
    r = gguf.GGUFReader(os.path.join(OUT_DIR, "tiny-f32.gguf"))
    data_start = min(t.data_offset for t in r.tensors)
    cut = data_start + 20000
    open(os.path.join(BAD_DIR, "truncated.gguf"), "wb").write(src[:cut])

    b = bytearray(open(base, "rb").read())
    assert b[:4] == b"GGUF"
    b[:4] = b"GGUX"
    open(os.path.join(BAD_DIR, "bad-magic.gguf"), "wb").write(bytes(b))

    b = bytearray(open(base, "rb").read())
    type_off, _ = tensor_type_field_offset(base, "blk.0.attn_q.weight")
    struct.pack_into("<I", b, type_off, 99)
    open(os.path.join(BAD_DIR, "unknown-quant.gguf"), "wb").write(bytes(b))

    write_gguf(os.path.join(BAD_DIR, "missing-tensor.gguf"), micro, mw, T.Q8_0,
               drop={"model.layers.1.mlp.down_proj.weight"}, name="umi-micro-llama")
    write_gguf(os.path.join(BAD_DIR, "wrong-shape.gguf"), micro, mw, T.Q8_0,
               shape_override={"model.layers.0.self_attn.v_proj.weight": (8, 32)}, name="umi-micro-llama")
    write_gguf(os.path.join(BAD_DIR, "vocab-mismatch.gguf"), micro, mw, T.Q8_0, n_tok=200, name="umi-micro-llama")

    ref["bad"] = {
        "base-micro.gguf": "valid control file (micro config) the other bad files are derived from",
        "truncated.gguf": {"from": "tiny-f32.gguf", "cut_at": cut, "tensor_data_start": data_start,
                           "original_size": len(src)},
        "bad-magic.gguf": {"from": "bad/base-micro.gguf", "magic": "GGUX"},
        "unknown-quant.gguf": {"from": "bad/base-micro.gguf", "tensor": "blk.0.attn_q.weight",
                               "type_field_offset": type_off, "new_type": 99, "old_type": int(T.Q8_0)},
        "missing-tensor.gguf": {"missing": "blk.1.ffn_down.weight"},
        "wrong-shape.gguf": {"tensor": "blk.0.attn_v.weight", "shape": [8, 32], "expected": [16, 32],
                             "ne": [32, 8]},
        "vocab-mismatch.gguf": {"n_tokens": 200, "vocab_size": 256, "token_embd_rows": 256},
    }

    dump_json(ref, os.path.join(OUT_DIR, "reference.json"))

    # checks on the bad files
    for fn in ("missing-tensor.gguf", "wrong-shape.gguf", "vocab-mismatch.gguf", "unknown-quant.gguf",
               "bad-magic.gguf", "truncated.gguf", "base-micro.gguf"):
        p = os.path.join(BAD_DIR, fn)
        sz = os.path.getsize(p)
        assert sz < 50_000, (fn, sz)
        try:
            rr = gguf.GGUFReader(p)
            names = {t.name: t for t in rr.tensors}
            info = f"{len(names)} tensors"
            if fn == "missing-tensor.gguf":
                assert "blk.1.ffn_down.weight" not in names and len(names) == 20
            if fn == "wrong-shape.gguf":
                assert [int(x) for x in names["blk.0.attn_v.weight"].shape] == [32, 8]
            if fn == "vocab-mismatch.gguf":
                n = len(rr.fields["tokenizer.ggml.tokens"].data)
                assert n == 200 and [int(x) for x in names["token_embd.weight"].shape] == [32, 256]
                info += f", {n} tokens"
        except Exception as e:  # expected for the corrupted ones
            info = f"GGUFReader error: {type(e).__name__}: {str(e)[:80]}"
        print(f"bad/{fn:22s} {sz:7d} bytes  {info}")

    total = 0
    for dp, _, fns in os.walk(OUT_DIR):
        for fn in fns:
            total += os.path.getsize(os.path.join(dp, fn))
    print("total under assets/tiny/gguf:", total, "bytes")


if __name__ == "__main__":
    main()
