"""Reference draws of umi's token sampler (umi-model generate.rs `Sampler`), computed independently in Python.

The sampler: probabilities exp((logit - max) / T) in float64, sorted from most to least likely (stable for ties), kept
up to the first index where their cumulative share reaches top_p, then r = u * (kept mass) with u from a splitmix64
stream seeded by FNV-1a("sampler") xor (seed * 0x9E3779B97F4A7C15), 53-bit uniform; the token is the first whose
running subtraction makes r <= 0. The stream is platform-independent (the reason for it: rand's SmallRng differs
between 64-bit and wasm32), so these draws hold on every target.

Rerun (from the repository root): python3 assets/reference/sampler_draws.py  → assets/reference/sampler_draws.json
"""

import json
import math
import os

M = (1 << 64) - 1
LOGITS = [0.1, 2.0, -1.0, 1.9, 0.5, 1.2]
CASES = [(7, 1.0, 0.9), (7, 0.5, 0.95), (123456789, 1.3, 1.0)]


class SplitMix64:
    def __init__(self, seed, name):
        h = 0xCBF29CE484222325
        for b in name.encode():
            h = ((h ^ b) * 0x100000001B3) & M
        self.state = h ^ ((seed * 0x9E3779B97F4A7C15) & M)

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    def unit(self):
        return (self.next() >> 11) / float(1 << 53)


def f32(x):
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def draws(seed, temperature, top_p, n=50):
    logits = [f32(x) for x in LOGITS]
    rng = SplitMix64(seed, "sampler")
    mx = max(logits)
    probs = [(i, math.exp((l - mx) / temperature)) for i, l in enumerate(logits)]
    total = sum(p for _, p in probs)
    probs.sort(key=lambda x: -x[1])
    kept, cut = 0.0, len(probs)
    for i, (_, p) in enumerate(probs):
        kept += p / total
        if kept >= top_p:
            cut = i + 1
            break
    probs = probs[:cut]
    mass = sum(p for _, p in probs)
    out = []
    for _ in range(n):
        r = rng.unit() * mass
        pick = probs[-1][0]
        for i, p in probs:
            r -= p
            if r <= 0:
                pick = i
                break
        out.append(pick)
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    cases = [
        {"seed": s, "temperature": t, "top_p": p, "logits": LOGITS, "draws": draws(s, t, p)} for s, t, p in CASES
    ]
    with open(os.path.join(here, "sampler_draws.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")
