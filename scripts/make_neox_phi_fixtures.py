#!/usr/bin/python3
"""Small random GPT-NeoX (Pythia), Phi and Phi-3 checkpoints in the Hugging Face
layouts, with float64 PyTorch references, committed under test/fixtures/hf/.

    /usr/bin/python3 scripts/make_neox_phi_fixtures.py [outdir]

Same file format and conventions as scripts/make_hf_fixtures.py (whose
safetensors writer/reader and reference.json layout this reuses): blocks A..B
run straight on the input embeddings, hooks are taken in block B, logits are
the full model, gradients are d(sum_t hook[t, f]) / d(input embeddings).

The math below is written from transformers' published modeling code
(modeling_gpt_neox.py, modeling_phi.py, modeling_phi3.py), in its structure:
views, slices and concatenations as those files do them. Each pitfall of the
families gets a self-check showing that the fixture tells the right reading
from the wrong one (the wrong reading moves the logits by far more than the
1e-4 test tolerance).

Hooks (every family): attn = attn_out = attention output projection (bias
included) as added to the residual stream; mlp = input of the MLP's output
projection; mlp_out = its output; resid = block output.
"""

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_hf_fixtures as base  # noqa: E402  (shared writer, reader, JSON layout)

torch.set_default_dtype(torch.float64)
if len(sys.argv) > 1:
    base.OUT = sys.argv[1]

IDS = base.IDS
FEATURE = base.GRAD_FEATURE
HOOKS = ("attn", "attn_out", "mlp", "mlp_out", "resid")
F = torch.nn.functional


# --------------------------------------------------------------------------
# shared pieces (rotate-half RoPE on a leading part of each head)
# --------------------------------------------------------------------------


def inv_freq(rot_dim, base_theta):
    # transformers: 1 / base ** (arange(0, dim, 2) / dim) with dim the ROTARY width
    return 1.0 / (base_theta ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim))


def cos_sin(T, rot_dim, base_theta):
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(rot_dim, base_theta))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_partial_rope(x, cos, sin):
    """x [heads, T, hd]; rotate the first cos.shape[-1] dims, pass the rest."""
    rd = cos.shape[-1]
    x_rot, x_pass = x[..., :rd], x[..., rd:]
    return torch.cat((x_rot * cos + base.rotate_half(x_rot) * sin, x_pass), dim=-1)


def causal_attention(q, k, v, scale):
    """q [H, T, hd], k/v [KV, T, hd]; query head h uses kv head h // (H/KV) (repeat_kv)."""
    rep = q.shape[0] // k.shape[0]
    k = k.repeat_interleave(rep, dim=0)
    v = v.repeat_interleave(rep, dim=0)
    T = q.shape[1]
    s = q @ k.transpose(1, 2) * scale
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    a = torch.softmax(s, -1) @ v
    return a.transpose(0, 1).reshape(T, -1)


def lin(W, name, x):
    y = x @ W[name + ".weight"].T
    return y + W[name + ".bias"] if name + ".bias" in W else y


# --------------------------------------------------------------------------
# GPT-NeoX (modeling_gpt_neox.py: GPTNeoXAttention, GPTNeoXMLP, GPTNeoXLayer)
# --------------------------------------------------------------------------


def neox_rot(cfg):
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    return int(hd * cfg["rotary_pct"])


def neox_theta(cfg):
    return cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000))


def neox_block(x, W, cfg, i, hooks, qkv_reading="per-head", freq_from="rotary"):
    p = f"gpt_neox.layers.{i}."
    T, D = x.shape
    nh = cfg["num_attention_heads"]
    hd = D // nh
    eps = cfg["layer_norm_eps"]
    ln = lambda v, n: base.layer_norm(v, W[p + n + ".weight"], W[p + n + ".bias"], eps)  # noqa: E731

    qkv = lin(W, p + "attention.query_key_value", ln(x, "input_layernorm"))
    if qkv_reading == "per-head":
        # [T, 3D] -> [T, heads, 3*hd]; q, k, v are each head's consecutive thirds
        qkv = qkv.view(T, nh, 3 * hd)
        q = qkv[..., :hd].permute(1, 0, 2)
        k = qkv[..., hd:2 * hd].permute(1, 0, 2)
        v = qkv[..., 2 * hd:].permute(1, 0, 2)
    else:  # the wrong, GPT-2-like reading: all q, then all k, then all v
        q, k, v = (t.view(T, nh, hd).permute(1, 0, 2) for t in qkv.split(D, dim=-1))
    rd = neox_rot(cfg)
    cos, sin = cos_sin(T, rd, neox_theta(cfg))
    if freq_from == "head":  # wrong: exponents over the head width instead of the rotary width
        freqs = torch.outer(torch.arange(T, dtype=torch.float64),
                            1.0 / (neox_theta(cfg) ** (torch.arange(0, rd, 2, dtype=torch.float64) / hd)))
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos(), emb.sin()
    q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
    attn = lin(W, p + "attention.dense", causal_attention(q, k, v, hd ** -0.5))

    act = {"gelu": F.gelu, "gelu_new": base.gelu_new}[cfg["hidden_act"]]
    if cfg["use_parallel_residual"]:
        mlp = act(lin(W, p + "mlp.dense_h_to_4h", ln(x, "post_attention_layernorm")))
        mlp_out = lin(W, p + "mlp.dense_4h_to_h", mlp)
        out = mlp_out + attn + x
    else:
        h = attn + x
        mlp = act(lin(W, p + "mlp.dense_h_to_4h", ln(h, "post_attention_layernorm")))
        mlp_out = lin(W, p + "mlp.dense_4h_to_h", mlp)
        out = mlp_out + h
    hooks.update(attn=attn, attn_out=attn, mlp=mlp, mlp_out=mlp_out, resid=out)
    return out


def neox_embed(W, ids):
    return W["gpt_neox.embed_in.weight"][torch.tensor(ids)]


def neox_head(W, cfg, x):
    x = base.layer_norm(x, W["gpt_neox.final_layer_norm.weight"], W["gpt_neox.final_layer_norm.bias"],
                        cfg["layer_norm_eps"])
    return x @ W["embed_out.weight"].T


# --------------------------------------------------------------------------
# Phi (modeling_phi.py: PhiAttention, PhiMLP, PhiDecoderLayer)
# --------------------------------------------------------------------------


def phi_block(x, W, cfg, i, hooks, act_name=None):
    p = f"model.layers.{i}."
    T, D = x.shape
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = D // nh
    h = base.layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], cfg["layer_norm_eps"])
    q = lin(W, p + "self_attn.q_proj", h).view(T, nh, hd).transpose(0, 1)
    k = lin(W, p + "self_attn.k_proj", h).view(T, nkv, hd).transpose(0, 1)
    v = lin(W, p + "self_attn.v_proj", h).view(T, nkv, hd).transpose(0, 1)
    rd = int(cfg["partial_rotary_factor"] * hd)
    cos, sin = cos_sin(T, rd, cfg["rope_theta"])
    q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
    attn = lin(W, p + "self_attn.dense", causal_attention(q, k, v, hd ** -0.5))
    act = {"gelu": F.gelu, "gelu_new": base.gelu_new}[act_name or cfg["hidden_act"]]
    mlp = act(lin(W, p + "mlp.fc1", h))
    mlp_out = lin(W, p + "mlp.fc2", mlp)
    out = attn + mlp_out + x
    hooks.update(attn=attn, attn_out=attn, mlp=mlp, mlp_out=mlp_out, resid=out)
    return out


def phi_embed(W, ids):
    return W["model.embed_tokens.weight"][torch.tensor(ids)]


def phi_head(W, cfg, x, lm_bias=True):
    x = base.layer_norm(x, W["model.final_layernorm.weight"], W["model.final_layernorm.bias"], cfg["layer_norm_eps"])
    y = x @ W["lm_head.weight"].T
    return y + W["lm_head.bias"] if lm_bias else y


# --------------------------------------------------------------------------
# Phi-3 (modeling_phi3.py: Phi3Attention, Phi3MLP, Phi3RMSNorm, Phi3DecoderLayer)
# --------------------------------------------------------------------------


def rms(v, w, eps):
    return w * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps))


def phi3_block(x, W, cfg, i, hooks, qkv_reading="contiguous", gate_first=True):
    p = f"model.layers.{i}."
    T, D = x.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // nh
    eps = cfg["rms_norm_eps"]
    qkv = lin(W, p + "self_attn.qkv_proj", rms(x, W[p + "input_layernorm.weight"], eps))
    qp = nh * hd
    if qkv_reading == "contiguous":
        q = qkv[..., :qp]
        k = qkv[..., qp:qp + nkv * hd]
        v = qkv[..., qp + nkv * hd:]
    else:  # wrong: per-kv-group interleave [q_g..., k_g, v_g] as some fused layouts use
        grp = qkv.view(T, nkv, (nh // nkv + 2) * hd)
        r = nh // nkv
        q = grp[..., :r * hd].reshape(T, qp)
        k = grp[..., r * hd:(r + 1) * hd].reshape(T, nkv * hd)
        v = grp[..., (r + 1) * hd:].reshape(T, nkv * hd)
    q = q.view(T, nh, hd).transpose(0, 1)
    k = k.view(T, nkv, hd).transpose(0, 1)
    v = v.view(T, nkv, hd).transpose(0, 1)
    rd = int(hd * cfg.get("partial_rotary_factor", 1.0))
    cos, sin = cos_sin(T, rd, cfg["rope_theta"])
    q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
    attn = lin(W, p + "self_attn.o_proj", causal_attention(q, k, v, hd ** -0.5))
    h = x + attn
    up_states = lin(W, p + "mlp.gate_up_proj", rms(h, W[p + "post_attention_layernorm.weight"], eps))
    gate, up = up_states.chunk(2, dim=-1)
    if not gate_first:
        gate, up = up, gate
    mlp = up * F.silu(gate)
    mlp_out = lin(W, p + "mlp.down_proj", mlp)
    out = h + mlp_out
    hooks.update(attn=attn, attn_out=attn, mlp=mlp, mlp_out=mlp_out, resid=out)
    return out


def phi3_head(W, cfg, x):
    x = rms(x, W["model.norm.weight"], cfg["rms_norm_eps"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


# --------------------------------------------------------------------------
# reference.json
# --------------------------------------------------------------------------


class Family:
    def __init__(self, block, embed, head, n_layers):
        self.block, self.embed, self.head, self.L = block, embed, head, n_layers

    def run(self, E0, W, cfg, A, B, **kw):
        hooks = {}
        x = E0
        for i in range(A - 1, B):
            x = self.block(x, W, cfg, i, hooks, **kw)
        return x, hooks

    def logits(self, W, cfg, ids, **kw):
        x, _ = self.run(self.embed(W, ids), W, cfg, 1, self.L, **kw)
        return self.head(W, cfg, x)


def ranges(L):
    out = [(1, b) for b in range(1, L + 1)] + [(2, 2), (2, L)]
    return list(dict.fromkeys(out))


def make_reference(fam, W, cfg, ids):
    cases = []
    for A, B in ranges(fam.L):
        _, hooks = fam.run(fam.embed(W, ids), W, cfg, A, B)
        for hk in HOOKS:
            o = hooks[hk]
            cases.append({"blocks": [A, B], "hook": hk, "shape": list(o.shape), "values": base.mat(o)})
    logits = fam.logits(W, cfg, ids)
    cases.append({"blocks": None, "hook": "logits", "shape": list(logits.shape), "values": base.mat(logits)})
    grads = []
    for A, B in [(1, fam.L), (2, 2)]:
        for hk in ("resid", "mlp", "mlp_out", "attn"):
            tok = fam.embed(W, ids).clone().requires_grad_(True)
            val = fam.run(tok, W, cfg, A, B)[1][hk][:, FEATURE].sum()
            (g,) = torch.autograd.grad(val, tok)
            # central-difference spot check of the autograd gradient
            t, d, h = len(ids) - 2, 5, 1e-6
            e = fam.embed(W, ids)
            ep, em = e.clone(), e.clone()
            ep[t, d] += h
            em[t, d] -= h
            fd = (fam.run(ep, W, cfg, A, B)[1][hk][:, FEATURE].sum()
                  - fam.run(em, W, cfg, A, B)[1][hk][:, FEATURE].sum()) / (2 * h)
            assert abs(fd.item() - g[t, d].item()) < 1e-6 * max(1.0, abs(fd.item())), (A, B, hk, fd, g[t, d])
            grads.append({"blocks": [A, B], "hook": hk, "feature": FEATURE, "value": base.r9(val.item()),
                          "grad": base.mat(g)})
    return {"ids": ids, "cases": cases, "grads": grads}, logits


def differs(a, b, what, at_least=1e-2):
    """The wrong reading must move the output far beyond the tests' 1e-4 relative tolerance."""
    rel = ((a - b).abs().max() / max(1.0, b.abs().max())).item()
    assert rel > at_least, (what, rel)
    return rel


def mlp1(fam, W, cfg, **kw):
    return fam.run(fam.embed(W, IDS), W, cfg, 1, 1, **kw)[1]["mlp"]


def write(d, cfg, st, f64, shards=None):
    base.write_config(d, cfg)
    if shards is None:
        base.write_safetensors(os.path.join(d, "model.safetensors"), st)
        base.check_roundtrip(d, ["model.safetensors"], f64)
        return
    import json
    names = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    total, wm = 0, {}
    for name, pred in zip(names, shards):
        part = {k: v for k, v in st.items() if pred(k) and k not in wm}
        total += base.write_safetensors(os.path.join(d, name), part)
        wm.update({k: name for k in part})
    assert set(wm) == set(st)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
        f.write("\n")
    base.check_roundtrip(d, names, f64)


def scale(W, s, mlp_in):
    """Projections × s (so that attention, RoPE and residual errors show), except the MLP input projection: its
    pre-activations are centred near -2.7, where erf and tanh GELU differ most (4.7e-4) while the MLP outputs stay
    small, so the GELU form moves the mlp hook by several times the tests' 1e-4 relative tolerance."""
    out = {k: v * s if v.dim() == 2 and "embed" not in k else v for k, v in W.items()}
    for k in [k for k in W if k.endswith(mlp_in + ".weight")]:
        out[k] = 0.5 * W[k]
        out[k[:-len("weight")] + "bias"] = -2.7 + 0.1 * torch.randn(W[k].shape[0], dtype=torch.float32)
    return out


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------


def neox_config(parallel, extra):
    cfg = {
        "architectures": ["GPTNeoXForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 64,
        "model_type": "gpt_neox",
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "rotary_pct": 0.25,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": base.TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_parallel_residual": parallel,
        "vocab_size": 96,
    }
    cfg.update(extra)
    return cfg


def neox_weights(cfg):
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    bias = cfg.get("attention_bias", True)
    W = {"gpt_neox.embed_in.weight": base.rnd(V, D)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"gpt_neox.layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            W[p + n + ".weight"] = base.norm_w(D)
            W[p + n + ".bias"] = base.bias(D)
        W[p + "attention.query_key_value.weight"] = base.linear_w(3 * D, D)
        W[p + "attention.dense.weight"] = base.linear_w(D, D)
        if bias:
            W[p + "attention.query_key_value.bias"] = base.bias(3 * D)
            W[p + "attention.dense.bias"] = base.bias(D)
        W[p + "mlp.dense_h_to_4h.weight"] = base.linear_w(I, D)
        W[p + "mlp.dense_h_to_4h.bias"] = base.bias(I)
        W[p + "mlp.dense_4h_to_h.weight"] = base.linear_w(D, I)
        W[p + "mlp.dense_4h_to_h.bias"] = base.bias(D)
    W["gpt_neox.final_layer_norm.weight"] = base.norm_w(D)
    W["gpt_neox.final_layer_norm.bias"] = base.bias(D)
    W["embed_out.weight"] = base.linear_w(V, D)
    return W


def make_neox(name, seed, parallel, extra, shards=None):
    torch.manual_seed(seed)
    cfg = neox_config(parallel, extra)
    # Larger weights than the default 0.2 scale: GELU's inputs reach the region where erf and tanh GELU differ.
    st, f64 = base.stored(scale(neox_weights(cfg), 2.0, "mlp.dense_h_to_4h"), torch.float16)
    fam = Family(neox_block, neox_embed, neox_head, cfg["num_hidden_layers"])
    ref, logits = make_reference(fam, f64, cfg, IDS)
    checks = {
        "qkv read as all-q-then-all-k": differs(fam.logits(f64, cfg, IDS, qkv_reading="grouped"), logits, "qkv"),
        "frequencies from the head dim": differs(fam.logits(f64, cfg, IDS, freq_from="head"), logits, "freq"),
        "full rotary": differs(fam.logits(f64, dict(cfg, rotary_pct=1.0), IDS), logits, "rotary_pct"),
        "other residual form": differs(fam.logits(f64, dict(cfg, use_parallel_residual=not parallel), IDS), logits,
                                       "parallel"),
        # GELU forms differ by < 5e-4 absolute: judged on block 1's mlp hook against the tests' 1e-4 tolerance.
        "tanh GELU (mlp hook)": differs(mlp1(fam, f64, dict(cfg, hidden_act="gelu_new")), mlp1(fam, f64, cfg), "gelu",
                                        1e-4),
    }
    d = base.folder(name)
    write(d, cfg, st, f64, shards)
    base.dump_reference(os.path.join(d, "reference.json"), ref)
    return d, checks


def make_phi():
    torch.manual_seed(2003)
    D, I, V, L, nh = 32, 64, 96, 2, 4
    cfg = {
        "architectures": ["PhiForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "embd_pdrop": 0.0,
        "eos_token_id": None,
        "hidden_act": "gelu_new",
        "hidden_size": D,
        "initializer_range": 0.02,
        "intermediate_size": I,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 64,
        "model_type": "phi",
        "num_attention_heads": nh,
        "num_hidden_layers": L,
        "num_key_value_heads": None,
        "partial_rotary_factor": 0.5,
        "qk_layernorm": False,
        "resid_pdrop": 0.0,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": base.TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": V,
    }
    W = {"model.embed_tokens.weight": base.rnd(V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = base.norm_w(D)
        W[p + "input_layernorm.bias"] = base.bias(D)
        for n in ("q_proj", "k_proj", "v_proj", "dense"):
            W[p + f"self_attn.{n}.weight"] = base.linear_w(D, D)
            W[p + f"self_attn.{n}.bias"] = base.bias(D)
        W[p + "mlp.fc1.weight"] = base.linear_w(I, D)
        W[p + "mlp.fc1.bias"] = base.bias(I)
        W[p + "mlp.fc2.weight"] = base.linear_w(D, I)
        W[p + "mlp.fc2.bias"] = base.bias(D)
    W["model.final_layernorm.weight"] = base.norm_w(D)
    W["model.final_layernorm.bias"] = base.bias(D)
    W["lm_head.weight"] = base.linear_w(V, D)
    W["lm_head.bias"] = base.bias(V) * 5
    st, f64 = base.stored(scale(W, 2.0, "mlp.fc1"), torch.float16)
    fam = Family(phi_block, phi_embed, phi_head, L)
    ref, logits = make_reference(fam, f64, cfg, IDS)

    def sequential_block(x, W_, cfg_, i, hooks):  # wrong: a Llama-style sequential block on the same weights
        p = f"model.layers.{i}."
        ln = lambda v: base.layer_norm(v, W_[p + "input_layernorm.weight"], W_[p + "input_layernorm.bias"], 1e-5)  # noqa
        inner = {}
        phi_block(x, W_, cfg_, i, inner)
        h = x + inner["attn"]
        return h + lin(W_, p + "mlp.fc2", base.gelu_new(lin(W_, p + "mlp.fc1", ln(h))))

    seq = Family(sequential_block, phi_embed, phi_head, L)
    checks = {
        "sequential residual": differs(seq.logits(f64, cfg, IDS), logits, "parallel"),
        "full rotary": differs(fam.logits(f64, dict(cfg, partial_rotary_factor=1.0), IDS), logits, "rotary"),
        "no lm_head bias": differs(phi_head(f64, cfg, fam.run(phi_embed(f64, IDS), f64, cfg, 1, L)[0], False),
                                   logits, "bias"),
        "exact GELU (mlp hook)": differs(mlp1(fam, f64, cfg, act_name="gelu"), mlp1(fam, f64, cfg), "gelu", 1e-4),
    }
    d = base.folder("phi-f16")
    write(d, cfg, st, f64)
    base.dump_reference(os.path.join(d, "reference.json"), ref)
    return d, checks


def phi3_config(*, hidden, inter, layers, heads, kv, tied, partial=None, head_dim=None):
    cfg = {
        "architectures": ["Phi3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "embd_pdrop": 0.0,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 128,
        "model_type": "phi3",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "original_max_position_embeddings": 128,
        "pad_token_id": 0,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "sliding_window": 64,
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
        "transformers_version": base.TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": 96,
    }
    if partial is not None:
        cfg["partial_rotary_factor"] = partial
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    return cfg


def phi3_weights(cfg):
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // nh
    W = {"model.embed_tokens.weight": base.rnd(V, D)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = base.norm_w(D)
        W[p + "self_attn.qkv_proj.weight"] = base.linear_w((nh + 2 * nkv) * hd, D)
        W[p + "self_attn.o_proj.weight"] = base.linear_w(D, nh * hd)
        W[p + "post_attention_layernorm.weight"] = base.norm_w(D)
        W[p + "mlp.gate_up_proj.weight"] = base.linear_w(2 * I, D)
        W[p + "mlp.down_proj.weight"] = base.linear_w(D, I)
    W["model.norm.weight"] = base.norm_w(D)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = base.linear_w(V, D)
    return W


def make_phi3(name, seed, cfg, shards=None):
    torch.manual_seed(seed)
    st, f64 = base.stored(scale(phi3_weights(cfg), 2.0, "none"), torch.bfloat16)
    fam = Family(phi3_block, phi_embed, phi3_head, cfg["num_hidden_layers"])
    ref, logits = make_reference(fam, f64, cfg, IDS)
    checks = {"up first": differs(fam.logits(f64, cfg, IDS, gate_first=False), logits, "gate_up")}
    if cfg["num_key_value_heads"] > 1:  # with one KV head the per-group layout is the contiguous one
        checks["qkv read per kv group"] = differs(fam.logits(f64, cfg, IDS, qkv_reading="grouped"), logits, "qkv")
    if cfg.get("partial_rotary_factor", 1.0) != 1.0:
        checks["full rotary"] = differs(fam.logits(f64, dict(cfg, partial_rotary_factor=1.0), IDS), logits, "rotary")
    d = base.folder(name)
    write(d, cfg, st, f64, shards)
    base.dump_reference(os.path.join(d, "reference.json"), ref)
    return d, checks


def main():
    os.makedirs(base.OUT, exist_ok=True)
    # GELU sanity: torch's default gelu is the erf form.
    xs = torch.linspace(-6, 6, 101)
    assert torch.allclose(F.gelu(xs), 0.5 * xs * (1 + torch.erf(xs / math.sqrt(2))), atol=1e-15)
    out = [
        # Pythia as shipped: parallel residual, rotary_pct 0.25, rotary_emb_base, f16, two shards.
        make_neox("pythia-parallel-f16", 2001, True, {"rotary_emb_base": 10000, "num_attention_heads": 2},
                  shards=[lambda k: k.startswith(("gpt_neox.embed_in", "gpt_neox.layers.0.")), lambda k: True]),
        # use_parallel_residual false, rope_theta (newer configs), rotary_pct 0.5, no attention biases.
        make_neox("neox-sequential-f16", 2002, False, {"rope_theta": 1000.0, "rotary_pct": 0.5,
                                                        "attention_bias": False}),
        make_phi(),
        # Phi-3 small/medium style GQA (4 query heads on 2 KV heads), untied, two shards.
        make_phi3("phi3-gqa-bf16", 2004, phi3_config(hidden=32, inter=48, layers=2, heads=4, kv=2, tied=False),
                  shards=[lambda k: k.startswith(("model.embed_tokens", "model.layers.0.")), lambda k: True]),
        # Phi-4-mini style: partial_rotary_factor 0.75, tied embeddings, GQA, explicit head_dim.
        make_phi3("phi3-partial-tied-bf16", 2005,
                  phi3_config(hidden=32, inter=48, layers=2, heads=4, kv=1, tied=True, partial=0.75, head_dim=8)),
    ]
    for d, checks in out:
        files = sorted(os.listdir(d))
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"{os.path.relpath(d, base.ROOT)}: {size} bytes; wrong readings move the logits by (relative):",
              ", ".join(f"{k} {v:.3g}" for k, v in checks.items()))


if __name__ == "__main__":
    main()
