"""Independent reference values for the umi GGUF dequantizers.

For each GGML type F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K this script builds the raw bytes
of 2 blocks (64 values for F16/BF16) from seeded random bytes (numpy default_rng(0)), with
every f16 scale field (d, m, dmin) overwritten by a finite value of magnitude in [0.01, 2.0]
and random sign, so all outputs are finite. The bytes are dequantized with the `gguf` Python
package (llama.cpp's gguf-py, a numpy port of ggml-quants.c), NOT with umi code:

    gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), gguf.GGMLQuantizationType.X)

(1-D uint8 input whose length is a multiple of the type size; the result is a 1-D float32
array of n_blocks * block_size values.)

Output: gguf_quants.json next to this file, a JSON list of
    {"type": "Q4_K", "ggml_type_id": 12, "block_size": 256, "type_size": 144,
     "hex": "<raw bytes as lowercase hex>", "values": [float, ...]}
Floats are float32 values written as Python floats (exact, round-trip safe).

Block layouts used (little endian, as in ggml-common.h):
    F16   id 1:  1 value / 2 bytes (IEEE half).  Random bits, NaN/Inf re-rolled; includes subnormals.
    BF16  id 30: 1 value / 2 bytes (upper half of an f32). Random bits, NaN/Inf re-rolled.
    Q4_0  id 2:  32 values / 18 bytes:  d f16 | qs[16]      x = (nibble - 8) * d
                 (low nibbles -> values 0..15, high nibbles -> values 16..31)
    Q4_1  id 3:  32 values / 20 bytes:  d f16 | m f16 | qs[16]      x = nibble * d + m
    Q8_0  id 8:  32 values / 34 bytes:  d f16 | qs int8[32]         x = q * d
    Q4_K  id 12: 256 values / 144 bytes: d f16 | dmin f16 | scales[12] (6-bit sc/min packed) | qs[128]
    Q6_K  id 14: 256 values / 210 bytes: ql[128] | qh[64] | scales int8[16] | d f16

Re-run:
    python3 -m pip install numpy gguf
    python3 assets/reference/gguf_quants.py
Generated with Python 3.11.7, numpy 2.4.6, gguf 0.19.0.
"""

import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_quants.json")

# (type, byte offsets of f16 scale fields within one block)
SPECS = [
    (T.F16, None),
    (T.BF16, None),
    (T.Q4_0, [0]),
    (T.Q4_1, [0, 2]),
    (T.Q8_0, [0]),
    (T.Q4_K, [0, 2]),
    (T.Q6_K, [208]),
]
EXPECTED_SIZES = {  # (block_size, type_size), written down independently of gguf
    T.F16: (1, 2), T.BF16: (1, 2), T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q8_0: (32, 34),
    T.Q4_K: (256, 144), T.Q6_K: (256, 210),
}


def random_scale_f16(rng):
    mag = rng.uniform(0.01, 2.0)
    sign = -1.0 if rng.random() < 0.5 else 1.0
    return np.array([sign * mag], dtype=np.float16).tobytes()


def finite_random_halves(rng, n, kind):
    """n random 16-bit patterns that are finite as f16 / bf16."""
    out = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    if kind == "f16":
        exp_mask, exp_all = 0x7C00, 0x7C00
    else:
        exp_mask, exp_all = 0x7F80, 0x7F80
    while True:
        bad = (out & exp_mask) == exp_all
        if not bad.any():
            return out
        out[bad] = rng.integers(0, 1 << 16, size=int(bad.sum()), dtype=np.uint16)


def main():
    rng = np.random.default_rng(0)
    records = []
    for qtype, scale_offsets in SPECS:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        assert (block_size, type_size) == EXPECTED_SIZES[qtype], (qtype, block_size, type_size)
        if scale_offsets is None:
            n_vals = 64
            bits = finite_random_halves(rng, n_vals, "f16" if qtype == T.F16 else "bf16")
            # make sure a few special values are present
            if qtype == T.F16:
                bits[:4] = [0x0000, 0x8000, 0x0001, 0x3C00]  # +0, -0, smallest subnormal, 1.0
            else:
                bits[:4] = [0x0000, 0x8000, 0x0001, 0x3F80]  # +0, -0, smallest subnormal, 1.0
            raw = bits.astype("<u2").tobytes()
        else:
            n_blocks = 2
            blocks = []
            for _ in range(n_blocks):
                b = bytearray(rng.integers(0, 256, size=type_size, dtype=np.uint8).tobytes())
                for off in scale_offsets:
                    b[off:off + 2] = random_scale_f16(rng)
                blocks.append(bytes(b))
            raw = b"".join(blocks)
            n_vals = n_blocks * block_size
        assert len(raw) % type_size == 0
        vals = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype)
        vals = np.asarray(vals, dtype=np.float32).reshape(-1)
        assert vals.shape == (n_vals,), (qtype, vals.shape)
        assert np.all(np.isfinite(vals)), qtype
        print(f"{qtype.name:5s} id={int(qtype):2d} block_size={block_size:3d} type_size={type_size:3d} "
              f"bytes={len(raw):4d} values={n_vals}")
        records.append({
            "type": qtype.name,
            "ggml_type_id": int(qtype),
            "block_size": block_size,
            "type_size": type_size,
            "hex": raw.hex(),
            "values": [float(v) for v in vals],
        })
    with open(OUT, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
