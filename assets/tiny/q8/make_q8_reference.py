#!/usr/bin/env python3
"""Q8_0 reference logits for tests/tests/qmatmul.rs: the tiny models of assets/tiny/ run by the
independent numpy forward (assets/tiny/llama_ref.py) with every projection and the LM head as
umi's `Llama::quantize_q8_0` and llama.cpp's `ggml_vec_dot_q8_0_q8_0` compute them, written from
GGML's Q8_0 definition, not from umi's code:

  per row, per block of 32 consecutive inputs: d = max|v| / 127, q = round(v / d) (half away
  from zero, in f32 arithmetic: inv = 1/d, q = round(v * inv)); weights per output row,
  activations per token; y = sum_b d_w[b] * d_x[b] * sum_k q_w[b,k] * q_x[b,k].

The token embedding is held in Q8_0 as well (rows of 32-value blocks, as llama.cpp's Q8_0
`token_embd`): lookups read its dequantized rows and a tied LM head multiplies with it.

Inputs of more than 8 rows (a prompt; umi's `QUANTIZED_MAX_ROWS`) are compute-bound: umi
multiplies them in float32 with the dequantized weights (d * q) instead of quantizing the
activations, except on CPUs with AVX-512 VNNI, where Q8_0 weights are held interleaved and every
input runs in 8 bits. `dense` holds logits of longer sequences computed the float32 way,
`prompt8` of the same sequences with every product in 8 bits.

The rest of the forward runs in float32 (as umi does), so a rounding that lands on a different
integer because of summation order can still differ by one quantum in rare elements.

  python3 assets/tiny/q8/make_q8_reference.py   (numpy, safetensors; writes q8_reference.json)
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from llama_ref import llama_forward  # noqa: E402

BLOCK = 32


def quantize(v):
    """Rows of v (last axis a multiple of 32) -> (q as float64 integers, d per block)."""
    v = np.asarray(v, dtype=np.float32)
    blocks = v.reshape(*v.shape[:-1], v.shape[-1] // BLOCK, BLOCK)
    d = (np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    scaled = (blocks * inv).astype(np.float32)
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # round half away from zero
    return q.astype(np.float64), d.astype(np.float64)


def q8_linear(x, w):
    """x [T, in] @ w.T ([out, in]) with both operands in Q8_0."""
    qx, dx = quantize(x)  # [T, nb, 32], [T, nb, 1]
    qw, dw = quantize(w)  # [out, nb, 32], [out, nb, 1]
    sums = np.einsum("tbk,obk->tob", qx, qw)  # exact integer block sums
    y = np.einsum("tob,tb,ob->to", sums, dx[..., 0], dw[..., 0])
    return y.astype(np.float32)


MAX_Q8_ROWS = 8


def dequantize(w):
    """w [out, in] -> its Q8_0 values d * q in float32, [out, in]."""
    q, d = quantize(w)
    return (q * d).astype(np.float32).reshape(np.shape(w))


def umi_linear(x, w):
    """8-bit products for at most MAX_Q8_ROWS rows, float32 against d * q beyond."""
    if x.shape[0] <= MAX_Q8_ROWS:
        return q8_linear(x, w)
    return (np.asarray(x, dtype=np.float32) @ dequantize(w).T).astype(np.float32)


def main():
    reference = json.load(open(os.path.join(os.path.dirname(here), "reference.json")))
    out = {}
    for folder in ["llama-gqa", "llama-tied"]:
        d = os.path.join(os.path.dirname(here), folder)
        cfg = json.load(open(os.path.join(d, "config.json")))
        weights = dict(load_file(os.path.join(d, "model.safetensors")))
        # the embedding table as umi holds it: Q8_0, read back as d * q
        weights["model.embed_tokens.weight"] = dequantize(weights["model.embed_tokens.weight"])
        seqs = reference[folder]["sequences"]
        logits = [
            llama_forward(weights, cfg, s, dtype=np.float32, linear=umi_linear).astype(float).round(6).tolist()
            for s in seqs
        ]
        vocab = cfg["vocab_size"]
        dense_seqs = [[(i * 37 + 5) % vocab for i in range(13)]]
        dense = [
            llama_forward(weights, cfg, s, dtype=np.float32, linear=umi_linear).astype(float).round(6).tolist()
            for s in dense_seqs
        ]
        prompt8 = [
            llama_forward(weights, cfg, s, dtype=np.float32, linear=q8_linear).astype(float).round(6).tolist()
            for s in dense_seqs
        ]
        out[folder] = {
            "sequences": seqs,
            "logits": logits,
            "dense_sequences": dense_seqs,
            "dense_logits": dense,
            "prompt8_sequences": dense_seqs,
            "prompt8_logits": prompt8,
        }
    with open(os.path.join(here, "q8_reference.json"), "w") as f:
        json.dump(out, f)
    print("wrote", os.path.join(here, "q8_reference.json"))


if __name__ == "__main__":
    main()
