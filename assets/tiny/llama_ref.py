"""Independent numpy reference of Hugging Face `LlamaForCausalLM` (forward pass only).

Written from the HF modeling_llama.py semantics, independent of the umi Rust code. Used by
`assets/tiny/make_tiny.py` (tiny random fixtures) and `assets/reference/smollm2_reference.py`
(SmolLM2-135M reference numbers).

Semantics (HF layout, weights are [out, in], y = x @ W.T, no biases):
  h = embed[tokens]
  per layer:
    a = RMSNorm(h) * input_layernorm            RMSNorm(x) = x / sqrt(mean(x^2) + eps)
    q, k, v = a @ Wq.T, a @ Wk.T, a @ Wv.T      split into heads of head_dim
    q, k = rope(q), rope(k)                     rotate-half RoPE, positions 0..T-1:
        inv_freq = 1 / theta^(arange(0, d, 2) / d);  freqs = pos x inv_freq
        emb = cat(freqs, freqs); x*cos(emb) + rotate_half(x)*sin(emb)
        rotate_half(x) = cat(-x[d/2:], x[:d/2])
    GQA: query head h uses kv head h // (n_heads / n_kv_heads)
    attn = softmax(q k^T / sqrt(head_dim) + causal mask) v
    h = h + attn @ Wo.T
    m = RMSNorm(h) * post_attention_layernorm
    h = h + down(silu(gate(m)) * up(m))
  logits = RMSNorm(h) * norm @ lm_head.T   (lm_head = embed_tokens when tie_word_embeddings)

Only numpy is needed (tested with numpy 2.4.6).
"""

import numpy as np


def rms_norm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(var + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope_cos_sin(seq_len, head_dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    pos = np.arange(seq_len, dtype=np.float64)
    freqs = np.outer(pos, inv_freq)  # [T, d/2]
    emb = np.concatenate([freqs, freqs], axis=-1)  # [T, d]
    return np.cos(emb).astype(dtype), np.sin(emb).astype(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
    # x: [heads, T, d]; cos/sin: [T, d]
    return x * cos[None] + rotate_half(x) * sin[None]


def llama_forward(weights, cfg, tokens, dtype=np.float64, linear=None):
    """Full causal forward from position 0.

    linear(x, w): the projection x @ w.T (w as [out, in]); replace it to model quantized
    matmuls (assets/tiny/q8/make_q8_reference.py). The embedding lookup reads the table in `weights`
    (make_q8_reference.py passes the Q8_0 one, dequantized).

    weights: dict HF tensor name -> np.ndarray ([out, in] for linear layers).
    cfg: dict with HF config.json field names.
    tokens: list of token ids.
    Returns logits as an np.ndarray [len(tokens), vocab_size] of `dtype`.
    """
    W = lambda name: np.asarray(weights[name], dtype=dtype)  # noqa: E731
    lin = linear or (lambda x, w: x @ w.T)
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    group = n_heads // n_kv
    T = len(tokens)

    h = W("model.embed_tokens.weight")[np.asarray(tokens)]  # [T, hidden]
    cos, sin = rope_cos_sin(T, head_dim, theta, dtype)
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)  # True = masked (future)
    scale = 1.0 / np.sqrt(head_dim)

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms_norm(h, W(p + "input_layernorm.weight"), eps)
        q = lin(a, W(p + "self_attn.q_proj.weight")).reshape(T, n_heads, head_dim).transpose(1, 0, 2)
        k = lin(a, W(p + "self_attn.k_proj.weight")).reshape(T, n_kv, head_dim).transpose(1, 0, 2)
        v = lin(a, W(p + "self_attn.v_proj.weight")).reshape(T, n_kv, head_dim).transpose(1, 0, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        kv_index = np.arange(n_heads) // group  # query head h -> kv head h // group
        k = k[kv_index]
        v = v[kv_index]
        scores = (q @ k.transpose(0, 2, 1)) * scale  # [heads, T, T]
        scores = np.where(causal[None], -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        attn = (probs @ v).transpose(1, 0, 2).reshape(T, n_heads * head_dim)
        h = h + lin(attn, W(p + "self_attn.o_proj.weight"))

        m = rms_norm(h, W(p + "post_attention_layernorm.weight"), eps)
        gate = lin(m, W(p + "mlp.gate_proj.weight"))
        up = lin(m, W(p + "mlp.up_proj.weight"))
        h = h + lin(silu(gate) * up, W(p + "mlp.down_proj.weight"))

    h = rms_norm(h, W("model.norm.weight"), eps)
    # HF LlamaConfig defaults tie_word_embeddings to False; then lm_head.weight must exist.
    head = W("model.embed_tokens.weight" if cfg.get("tie_word_embeddings", False) else "lm_head.weight")
    return lin(h, head)
