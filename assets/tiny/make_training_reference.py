"""Training reference fixtures (loss, gradients, LoRA via PEFT, AdamW steps) for the tiny Llama.

Purpose: reference numbers for umi's training tests (full fine-tuning backward pass, LoRA forward /
backward, gradient clipping and the AdamW optimizer), produced by PyTorch + transformers + PEFT
themselves from the tiny model in assets/tiny/llama-gqa (vocab 256, hidden 64, 2 layers, 4 heads /
2 KV heads, head_dim 16, untied lm_head, float32 weights).

Rerun (from the repository root; ~15 s on CPU, deterministic, byte-identical outputs):
    /work/venv-bench/bin/python assets/tiny/make_training_reference.py
The script re-execs itself once with PYTHONHASHSEED=0 (PEFT writes target_modules from a Python set,
so adapter_config.json's list order would otherwise change from run to run), uses 1 CPU thread and
torch.use_deterministic_algorithms(True), and deletes/recreates assets/tiny/training/ on each run.
Versions used: Python 3.11.7, torch 2.15.0+cu132 (run on CPU), transformers 5.23.0, peft 0.21.2 (pinned:
`/work/venv-bench/bin/pip install peft==0.21.2`), safetensors 0.8.0, numpy (for llama_ref.py).

Writes assets/tiny/training/:
  batch.json                 fixed batch: input_ids / labels / attention_mask, 2 x 12, right-padded
  full.json                  {"loss"} of the base model (float64 forward)
  full_grads.safetensors     d loss / d param for EVERY base parameter (HF names, HF layout)
  peft_adapter/              PEFT's own `save_pretrained` output (adapter_config.json +
                             adapter_model.safetensors, float32) = the LoRA state used below
                             (PEFT's boilerplate model card README.md is deleted)
  lora.json                  LoRA loss, scaling, grad norms, hyper-parameters, step-2 loss
  lora_grads.safetensors     d loss / d lora_A, lora_B (base frozen), float64 pass
  lora_logits.safetensors    "lora_logits" (adapted model) and "base_logits" (adapter disabled),
                             each [2, 12, 256]
  lora_after_adamw.safetensors   OPTIMIZER REFERENCE: LoRA weights after 1 clipped AdamW step
  lora_after_adamw2.safetensors  OPTIMIZER REFERENCE: LoRA weights after a 2nd step (grads
                                 recomputed on the same batch with the step-1 weights)

Conventions:
  * Every computation runs in float64 (model.double(), eager attention); every tensor is STORED as
    float32 (safetensors "F32"). JSON floats are Python repr of the float64 values. The LoRA start
    point is the float32 adapter in peft_adapter/ (widened exactly to float64); the AdamW results are
    float64 and are rounded to float32 only when saved.
    Stock transformers 5.23 Llama is NOT fully float64 after .double(): it keeps float32 islands
    (LlamaRMSNorm casts to float32, LlamaRotaryEmbedding builds cos/sin in float32, eager attention
    does softmax(dtype=float32), ForCausalLMLoss does logits.float()). This script patches exactly those
    four spots to keep float64 (same formulas, no casts) while computing the references, so they are a
    true float64 computation. It asserts: (a) base logits == the independent numpy float64 forward in
    llama_ref.py to 1e-10 on non-pad positions, (b) each loss == stock (unpatched) transformers'
    `model(..., labels=...).loss` to 1e-5 relative (the stock value carries float32 rounding).
  * Full-model tensors use HF names and the HF Linear layout [out, in] (y = x @ W.T), e.g.
    `model.layers.0.self_attn.q_proj.weight` is [64, 64], `...k_proj.weight` [32, 64].
  * LoRA tensors use PEFT's adapter-file names (the names inside peft_adapter/adapter_model.safetensors,
    i.e. the PEFT state_dict names WITHOUT the adapter name "default"), e.g.
    `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` [r, in] and
    `base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight` [out, r].
    Adapted linear: y = x @ W.T + scaling * (x @ A.T) @ B.T, scaling = lora_alpha / r = 8 / 4 = 2.0
    (no rsLoRA, dropout 0, no bias). Targets: q,k,v,o,gate,up,down projections of every layer.
  * Loss = transformers' causal-LM loss: logits[:, :-1] predict labels[:, 1:]; cross-entropy with
    ignore_index -100; reduction = mean over all unmasked target tokens in the whole batch (sum of
    per-token NLL / number of target tokens; NOT a per-sequence mean). Here 7 + 4 = 11 targets.
    The script evaluates this formula itself in float64 (F.cross_entropy(logits[:, :-1], labels[:, 1:],
    ignore_index=-100, reduction="mean")), since ForCausalLMLoss would cast the logits to float32.
  * Labels are -100 on the first 5 ("prompt") positions of each row and on padding. Padding id 0,
    attention_mask 0 on padding. Position ids are 0..11 for both rows (transformers' default,
    not derived from the mask; irrelevant for right padding). Logits at padded positions follow HF
    eager semantics (pad keys masked, a pad query attends causally to all non-pad keys), but tests
    should only compare positions with attention_mask == 1.
  * LoRA init: torch.manual_seed(0) immediately before get_peft_model (PEFT default init:
    lora_A = kaiming_uniform_(a=sqrt(5)) i.e. U(-1/sqrt(in), 1/sqrt(in)), lora_B = 0), then every
    lora_B is overwritten with N(0, 0.02^2) drawn from torch.Generator().manual_seed(1234) in
    model.named_parameters() order. A Rust port should LOAD peft_adapter/ rather than re-derive it.
  * Optimizer reference: grads (float64) -> torch.nn.utils.clip_grad_norm_(max_norm=1.0) (total L2
    norm over all LoRA grads; coefficient = min(1, max_norm / (norm + 1e-6))) -> torch.optim.AdamW
    (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, foreach=False), applied to the
    float64 LoRA params. torch's AdamW update for step t:
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
        p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    Weight decay applies to every LoRA parameter (lora_A and lora_B). Step 2 reuses the optimizer
    state (m, v, t) of step 1; its loss/grads are computed with the step-1 weights in float64.
"""

import contextlib
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # keep assets/tiny free of __pycache__

# PEFT stores target_modules as a Python set, so the list order in adapter_config.json depends on string
# hashing; pin the hash seed (re-exec once) so the file is byte-identical on every run.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from llama_ref import llama_forward  # noqa: E402

MODEL_REL = "assets/tiny/llama-gqa"  # relative, so adapter_config.json holds no machine path
OUT = os.path.join(HERE, "training")

SEQ_LEN = 12
PROMPT_LEN = 5
PAD_ID = 0
ROWS = [
    [1, 17, 42, 99, 3, 250, 7, 128, 64, 33, 201, 5],  # full length 12
    [1, 5, 77, 5, 200, 31, 9, 144, 88],  # 9 tokens + 3 padding
]

LORA_R = 4
LORA_ALPHA = 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_B_STD = 0.02
LORA_B_SEED = 1234
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MAX_GRAD_NORM = 1.0


def make_batch():
    input_ids, labels, mask = [], [], []
    for row in ROWS:
        n = len(row)
        pad = SEQ_LEN - n
        input_ids.append(row + [PAD_ID] * pad)
        mask.append([1] * n + [0] * pad)
        labels.append([-100] * PROMPT_LEN + row[PROMPT_LEN:] + [-100] * pad)
    return input_ids, labels, mask


def load_base():
    model = AutoModelForCausalLM.from_pretrained(MODEL_REL, dtype=torch.float32, attn_implementation="eager")
    model.eval()  # no dropout anywhere (attention_dropout 0); gradients still flow
    return model


def _rmsnorm_f64(self, hidden_states):
    # LlamaRMSNorm.forward without `.to(torch.float32)`
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@torch.no_grad()
def _rope_f64(self, x, position_ids):
    # LlamaRotaryEmbedding.forward (default rope) with inv_freq / cos / sin built in float64
    cfg = self.config
    base = cfg.rope_parameters["rope_theta"]
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq.to(x.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def _eager_attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    # eager_attention_forward with softmax in the input dtype instead of float32
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = torch.nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


@contextlib.contextmanager
def true_float64():
    """Temporarily remove transformers' float32 islands from the Llama forward."""
    saved = (
        modeling_llama.LlamaRMSNorm.forward,
        modeling_llama.LlamaRotaryEmbedding.forward,
        modeling_llama.eager_attention_forward,
    )
    modeling_llama.LlamaRMSNorm.forward = _rmsnorm_f64
    modeling_llama.LlamaRotaryEmbedding.forward = _rope_f64
    modeling_llama.eager_attention_forward = _eager_attention_f64
    try:
        yield
    finally:
        (
            modeling_llama.LlamaRMSNorm.forward,
            modeling_llama.LlamaRotaryEmbedding.forward,
            modeling_llama.eager_attention_forward,
        ) = saved


def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss (no num_items_in_batch) without its `.float()` cast: float64 stays float64."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="mean"
    )


def manual_loss(logits, labels):
    """Independent re-statement of the reduction, used as a check."""
    lg = logits[:, :-1].reshape(-1, logits.shape[-1])
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    nll = -torch.log_softmax(lg[keep], dim=-1).gather(1, tg[keep][:, None])[:, 0]
    return nll.sum() / keep.sum()


def forward_loss(model, ids_t, mask_t, lab_t):
    """float64 forward + loss; checks it against transformers' own (float32-cast) loss."""
    with true_float64():
        o = model(input_ids=ids_t, attention_mask=mask_t)
    assert o.logits.dtype == torch.float64
    loss = causal_lm_loss(o.logits, lab_t)
    assert abs(manual_loss(o.logits.detach(), lab_t).item() - loss.item()) < 1e-12
    with torch.no_grad():
        hf = model(input_ids=ids_t, attention_mask=mask_t, labels=lab_t).loss.item()
    assert abs(hf - loss.item()) < 1e-5 * max(1.0, abs(hf)), (hf, loss.item())
    return loss, o.logits.detach()


def f32(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def adapter_name(param_name):
    # state_dict name "....q_proj.lora_A.default.weight" -> adapter-file name "....q_proj.lora_A.weight"
    return param_name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def dump_json(path, obj):
    """indent-2 JSON, but lists of scalars (and lists of such lists, i.e. the batch rows) stay on one line."""

    def enc(x, ind):
        pad = "  " * (ind + 1)
        if isinstance(x, dict):
            items = [f"{pad}{json.dumps(k)}: {enc(v, ind + 1)}" for k, v in x.items()]
            return "{\n" + ",\n".join(items) + "\n" + "  " * ind + "}"
        if isinstance(x, list) and x and all(isinstance(r, list) for r in x):
            return "[\n" + ",\n".join(pad + json.dumps(r) for r in x) + "\n" + "  " * ind + "]"
        return json.dumps(x)

    with open(path, "w") as f:
        f.write(enc(obj, 0) + "\n")


def main():
    os.chdir(REPO)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    shutil.rmtree(OUT, ignore_errors=True)  # regenerate from scratch, no stale files
    os.makedirs(OUT)

    input_ids, labels, mask = make_batch()
    ids_t = torch.tensor(input_ids)
    lab_t = torch.tensor(labels)
    mask_t = torch.tensor(mask)
    n_targets = int((lab_t[:, 1:] != -100).sum())
    dump_json(
        os.path.join(OUT, "batch.json"),
        {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": mask,
            "pad_token_id": PAD_ID,
            "prompt_len": PROMPT_LEN,
            "num_target_tokens": n_targets,
            "reduction": "mean over all unmasked target tokens in the batch",
            "loss_definition": "logits[:, :-1] predict labels[:, 1:]; cross-entropy, ignore_index -100; "
            "sum of per-token NLL / num_target_tokens",
        },
    )

    # ---------------- full fine-tuning reference (float64) ----------------
    base = load_base().double()
    for p in base.parameters():
        p.requires_grad_(True)
    loss, base_logits_full = forward_loss(base, ids_t, mask_t, lab_t)
    loss.backward()
    full_loss = loss.item()
    grads = {n: p.grad for n, p in base.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert len(grads) == len(base.state_dict()), "every parameter must have a gradient"
    save_file(f32(grads), os.path.join(OUT, "full_grads.safetensors"))
    dump_json(os.path.join(OUT, "full.json"), {"loss": full_loss, "dtype_of_computation": "float64"})

    # Cross-check against the independent numpy forward (llama_ref.py) at non-pad positions.
    with open(os.path.join(MODEL_REL, "config.json")) as f:
        cfg = json.load(f)
    w_np = {k: v.numpy() for k, v in load_file(os.path.join(MODEL_REL, "model.safetensors")).items()}
    for b, row in enumerate(ROWS):
        ref = llama_forward(w_np, cfg, row)
        diff = np.abs(ref - base_logits_full[b, : len(row)].numpy()).max()
        assert diff < 1e-10, f"llama_ref mismatch row {b}: {diff}"
    del base

    # ---------------- LoRA reference, made by PEFT ----------------
    base = load_base()
    lcfg = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(0)
    model = get_peft_model(base, lcfg)
    gen = torch.Generator().manual_seed(LORA_B_SEED)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * LORA_B_STD)
    lora_layers = [m for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(lora_layers) == len(TARGETS) * cfg["num_hidden_layers"]
    assert {m.scaling["default"] for m in lora_layers} == {LORA_ALPHA / LORA_R}
    model.save_pretrained(os.path.join(OUT, "peft_adapter"))
    # save_pretrained also writes a boilerplate model card; only the two adapter files are fixtures.
    os.remove(os.path.join(OUT, "peft_adapter", "README.md"))

    model.double()
    model.eval()
    lora_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n, _ in lora_params)
    assert len(lora_params) == 2 * len(TARGETS) * cfg["num_hidden_layers"]

    # The saved adapter must equal the (float32) params we start from.
    saved = load_file(os.path.join(OUT, "peft_adapter", "adapter_model.safetensors"))
    assert set(saved) == {adapter_name(n) for n, _ in lora_params}
    for n, p in lora_params:
        assert saved[adapter_name(n)].dtype == torch.float32
        assert torch.equal(saved[adapter_name(n)].double(), p.detach())

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss, logits = forward_loss(model, ids_t, mask_t, lab_t)
        loss.backward()
        return loss.item(), logits

    lora_loss, lora_logits = loss_and_grads()
    with torch.no_grad(), model.disable_adapter(), true_float64():
        base_logits = model(input_ids=ids_t, attention_mask=mask_t).logits.detach()
    assert torch.allclose(base_logits, base_logits_full, rtol=0, atol=1e-12)
    assert (lora_logits - base_logits).abs().max() > 1e-4, "adapter must change the output"

    save_file(
        f32({adapter_name(n): p.grad for n, p in lora_params}),
        os.path.join(OUT, "lora_grads.safetensors"),
    )
    save_file(
        f32({"lora_logits": lora_logits, "base_logits": base_logits}),
        os.path.join(OUT, "lora_logits.safetensors"),
    )

    # ---------------- AdamW optimizer references ----------------
    params = [p for _, p in lora_params]
    p0 = [p.detach().clone() for p in params]
    g0 = [p.grad.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, foreach=False, **ADAMW)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM, foreach=False).item()
    opt.step()
    # Independent restatement of clip + AdamW step 1 (documents the exact formula).
    norm = torch.sqrt(sum((g * g).sum() for g in g0))
    assert abs(norm.item() - grad_norm) < 1e-12
    coef = min(1.0, MAX_GRAD_NORM / (norm.item() + 1e-6))
    lr, (b1, b2), eps, wd = ADAMW["lr"], ADAMW["betas"], ADAMW["eps"], ADAMW["weight_decay"]
    for p, w, g in zip(params, p0, g0):
        g = g * coef
        m, v = (1 - b1) * g, (1 - b2) * g * g
        expect = w * (1 - lr * wd) - (lr / (1 - b1)) * m / (v.sqrt() / (1 - b2) ** 0.5 + eps)
        assert (expect - p.detach()).abs().max() < 1e-15
    save_file(
        f32({adapter_name(n): p for n, p in lora_params}),
        os.path.join(OUT, "lora_after_adamw.safetensors"),
    )

    loss_step2, _ = loss_and_grads()
    grad_norm2 = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM, foreach=False).item()
    opt.step()
    save_file(
        f32({adapter_name(n): p for n, p in lora_params}),
        os.path.join(OUT, "lora_after_adamw2.safetensors"),
    )

    dump_json(
        os.path.join(OUT, "lora.json"),
        {
            "loss": lora_loss,
            "scaling": LORA_ALPHA / LORA_R,
            "r": LORA_R,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": 0.0,
            "target_modules": TARGETS,
            "lora_B_init": f"N(0, {LORA_B_STD}^2), torch.Generator().manual_seed({LORA_B_SEED}), named_parameters order",
            "grad_norm": grad_norm,
            "grad_norm_step2": grad_norm2,
            "loss_step2": loss_step2,
            "optimizer_reference": {
                "note": "lora_after_adamw*.safetensors are OPTIMIZER references: clip_grad_norm_(max_norm) on the "
                "float64 LoRA grads, then torch.optim.AdamW.step(); step 2 recomputes loss/grads on the same batch "
                "with the step-1 weights and reuses the optimizer state. grad_norm* are pre-clip total L2 norms.",
                "optimizer": "torch.optim.AdamW",
                "lr": ADAMW["lr"],
                "betas": list(ADAMW["betas"]),
                "eps": ADAMW["eps"],
                "weight_decay": ADAMW["weight_decay"],
                "max_grad_norm": MAX_GRAD_NORM,
                "clip_coef": "min(1, max_norm / (total_norm + 1e-6))",
            },
            "versions": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
        },
    )
    print(f"full loss {full_loss!r}  lora loss {lora_loss!r}  grad_norm {grad_norm!r}  loss_step2 {loss_step2!r}")


if __name__ == "__main__":
    main()
