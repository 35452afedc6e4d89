#!/usr/bin/python3
"""Small random Hugging Face-layout checkpoints (bf16, as the families ship) for
Gemma, Gemma-2, Qwen3 and OLMo-2, with float64 reference outputs, written to
test/fixtures/hf/ beside make_hf_fixtures.py's (whose safetensors writer,
reader and reference.json format this script reuses).

Run with Debian's python (torch + numpy; no transformers):

    /usr/bin/python3 scripts/make_hf_fixtures_gemma_qwen3_olmo2.py [outdir]

The reference math is written from the published definitions (transformers'
modeling_gemma.py, modeling_gemma2.py, modeling_qwen3.py, modeling_olmo2.py),
in float64 on the weights as stored (rounded to bf16):

  Gemma    RMSNorm x*rsqrt(mean(x^2)+eps)*(1+w); embeddings * sqrt(hidden_size);
           MLP down(gelu_tanh(gate(x)) * up(x)); tied head; head_dim free.
  Gemma-2  + post_attention_layernorm on the attention output and
           post_feedforward_layernorm on the MLP output (pre_feedforward_layernorm
           is the MLP input norm); scores * query_pre_attn_scalar^-0.5, then
           cap*tanh(s/cap) with attn_logit_softcapping, then the mask; sliding
           window on layers with layer_idx % 2 == 0 (keys s with s <= t - window
           masked, torch.tril(ones, diagonal=-window)); logits
           cap*tanh(z/cap) with final_logit_softcapping.
  Qwen3    RMSNorm (weight [head_dim]) on each q and k head after the split into
           heads, before RoPE.
  OLMo-2   no input norms; x + post_attention_layernorm(attn(x)), then
           x + post_feedforward_layernorm(mlp(x)); q_norm / k_norm over the full
           q / k projections before the split into heads.

Cases: every hook after blocks 1-k for every k (the hidden state at every
block), each block k alone, and 2-L.  Hooks of the LAST block B of "blocks A-B" (run straight on the embeddings E0):
  attn = o_proj output; attn_out = what is added to the residual stream (after
  the post norm where the family has one); mlp = down_proj's input; mlp_out =
  what the MLP adds; resid = block output.  E0 = embed_tokens[ids] (Gemma:
  * sqrt(d)); gradients are d(sum_t O[t, f]) / d embed_tokens[ids], i.e. in the
  embedding table's space, BEFORE Gemma's scale.

Every output is also computed by an independent numpy implementation (explicit
per-head, per-query loops; RoPE as a complex rotation) and must agree to 1e-10;
each gradient is spot-checked by central differences; and each pitfall must
matter: removing it changes the outputs.
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_hf_fixtures as base  # noqa: E402  (safetensors I/O, reference.json format)

torch.set_default_dtype(torch.float64)

ROOT = base.ROOT
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "test", "fixtures", "hf")
IDS = base.IDS
GRAD_FEATURE = base.GRAD_FEATURE
HOOKS = ("attn", "attn_out", "mlp", "mlp_out", "resid")

# --------------------------------------------------------------------------
# torch float64 reference
# --------------------------------------------------------------------------


def rms(x, w, eps, offset):
    y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w) if offset else y * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope_cos_sin(T, hd, theta):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def is_sliding(cfg, i):
    return cfg["family"] == "gemma2" and i % 2 == 0


def block(fam, x, W, cfg, i, opts):
    """One decoder layer; returns (output, hooks). opts toggles pitfalls off for the self-checks."""
    p = f"model.layers.{i}."
    T = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    gem = fam in ("gemma", "gemma2")

    def norm(v, name):
        return rms(v, W[p + name + ".weight"], eps, gem)

    def lin(v, name):
        return v @ W[p + name + ".weight"].T

    xin = x if fam == "olmo2" else norm(x, "input_layernorm")
    q, k, v = lin(xin, "self_attn.q_proj"), lin(xin, "self_attn.k_proj"), lin(xin, "self_attn.v_proj")
    if fam == "olmo2" and opts.get("qk_norm", True):
        q = rms(q, W[p + "self_attn.q_norm.weight"], eps, False)
        k = rms(k, W[p + "self_attn.k_norm.weight"], eps, False)
    q = q.view(T, nh, hd)
    k = k.view(T, nkv, hd)
    v = v.view(T, nkv, hd)
    if fam == "qwen3" and opts.get("qk_norm", True):
        q = rms(q, W[p + "self_attn.q_norm.weight"], eps, False)
        k = rms(k, W[p + "self_attn.k_norm.weight"], eps, False)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    cos, sin = rope_cos_sin(T, hd, cfg["rope_theta"])
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nh // nkv
    k = k.repeat_interleave(rep, dim=0)
    v = v.repeat_interleave(rep, dim=0)
    scaling = cfg["query_pre_attn_scalar"] ** -0.5 if fam == "gemma2" else hd ** -0.5
    s = (q @ k.transpose(1, 2)) * scaling
    cap = cfg.get("attn_logit_softcapping") if fam == "gemma2" and opts.get("softcap", True) else None
    if cap is not None:
        s = torch.tanh(s / cap) * cap
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    if is_sliding(cfg, i) and opts.get("window", True):
        mask = mask | torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-cfg["sliding_window"])
    s = s.masked_fill(mask, float("-inf"))
    a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, nh * hd)
    attn = lin(a, "self_attn.o_proj")
    if fam == "gemma2":
        attn_out = norm(attn, "post_attention_layernorm")
    elif fam == "olmo2":
        attn_out = rms(attn, W[p + "post_attention_layernorm.weight"], eps, False)
    else:
        attn_out = attn
    h = x + attn_out
    if fam == "gemma":
        hn = norm(h, "post_attention_layernorm")
    elif fam == "gemma2":
        hn = norm(h, "pre_feedforward_layernorm")
    elif fam == "qwen3":
        hn = norm(h, "post_attention_layernorm")
    else:
        hn = h
    g = lin(hn, "mlp.gate_proj")
    act = torch.nn.functional.gelu(g, approximate="tanh") if gem else torch.nn.functional.silu(g)
    mlp = act * lin(hn, "mlp.up_proj")
    down = lin(mlp, "mlp.down_proj")
    if fam == "gemma2":
        mlp_out = norm(down, "post_feedforward_layernorm")
    elif fam == "olmo2":
        mlp_out = rms(down, W[p + "post_feedforward_layernorm.weight"], eps, False)
    else:
        mlp_out = down
    out = h + mlp_out
    return out, dict(attn=attn, attn_out=attn_out, mlp=mlp, mlp_out=mlp_out, resid=out)


def embed_scale(cfg):
    return math.sqrt(cfg["hidden_size"]) if cfg["family"] in ("gemma", "gemma2") else 1.0


def run(W, cfg, tok, A, B, opts=None):
    """tok: rows of embed_tokens (table space); Gemma's scale is applied here, before block A."""
    x = tok * embed_scale(cfg)
    hooks = {}
    for i in range(A - 1, B):
        x, hooks = block(cfg["family"], x, W, cfg, i, opts or {})
    return x, hooks


def logits_of(W, cfg, ids, opts=None):
    opts = opts or {}
    tok = W["model.embed_tokens.weight"][torch.tensor(ids)]
    x, _ = run(W, cfg, tok, 1, cfg["num_hidden_layers"], opts)
    gem = cfg["family"] in ("gemma", "gemma2")
    x = rms(x, W["model.norm.weight"], cfg["rms_norm_eps"], gem)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    z = x @ head.T
    cap = cfg.get("final_logit_softcapping") if cfg["family"] == "gemma2" and opts.get("softcap", True) else None
    if cap is not None:
        z = torch.tanh(z / cap) * cap
    return z


# --------------------------------------------------------------------------
# independent numpy implementation (self-check only)
# --------------------------------------------------------------------------


def numpy_run(Wt, cfg, ids, A, B, full):
    W = {k: v.numpy() for k, v in Wt.items()}
    fam = cfg["family"]
    gem = fam in ("gemma", "gemma2")
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    half = hd // 2
    inv = np.array([cfg["rope_theta"] ** (-(2.0 * j) / hd) for j in range(half)])
    rot = np.exp(1j * np.outer(np.arange(T), inv))

    def rope(m):  # one head [T, hd]: pairs (j, j + hd/2) rotated as complex numbers
        z = (m[:, :half] + 1j * m[:, half:]) * rot
        return np.concatenate([z.real, z.imag], axis=1)

    def norm(v, w, offset):
        scale = np.sqrt(np.mean(v ** 2, axis=-1, keepdims=True) + eps)
        return v / scale * ((1 + w) if offset else w)

    def lin(v, name):
        return np.einsum("ti,oi->to", v, W[name])

    x = W["model.embed_tokens.weight"][np.array(ids)] * (math.sqrt(cfg["hidden_size"]) if gem else 1.0)
    layers = range(cfg["num_hidden_layers"]) if full else range(A - 1, B)
    hooks = {}
    for i in layers:
        p = f"model.layers.{i}."
        xin = x if fam == "olmo2" else norm(x, W[p + "input_layernorm.weight"], gem)
        q = lin(xin, p + "self_attn.q_proj.weight")
        k = lin(xin, p + "self_attn.k_proj.weight")
        v = lin(xin, p + "self_attn.v_proj.weight")
        if fam == "olmo2":
            q = norm(q, W[p + "self_attn.q_norm.weight"], False)
            k = norm(k, W[p + "self_attn.k_norm.weight"], False)
        heads = []
        for hh in range(nh):
            kv = hh // (nh // nkv)
            qh = q[:, hh * hd:(hh + 1) * hd]
            kh = k[:, kv * hd:(kv + 1) * hd]
            if fam == "qwen3":
                qh = norm(qh, W[p + "self_attn.q_norm.weight"], False)
                kh = norm(kh, W[p + "self_attn.k_norm.weight"], False)
            qh, kh = rope(qh), rope(kh)
            vh = v[:, kv * hd:(kv + 1) * hd]
            o = np.zeros((T, hd))
            for t in range(T):
                lo = 0
                if fam == "gemma2" and i % 2 == 0:
                    lo = max(0, t - cfg["sliding_window"] + 1)
                sc = []
                for u in range(lo, t + 1):
                    val = float(qh[t] @ kh[u])
                    if fam == "gemma2":
                        val = val / math.sqrt(cfg["query_pre_attn_scalar"])
                        c = cfg["attn_logit_softcapping"]
                        val = c * math.tanh(val / c)
                    else:
                        val = val / math.sqrt(hd)
                    sc.append(val)
                sc = np.array(sc)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                o[t] = pr @ vh[lo:t + 1]
            heads.append(o)
        attn = lin(np.concatenate(heads, axis=1), p + "self_attn.o_proj.weight")
        if fam in ("gemma2", "olmo2"):
            attn_out = norm(attn, W[p + "post_attention_layernorm.weight"], gem)
        else:
            attn_out = attn
        x = x + attn_out
        pre = {"gemma": "post_attention_layernorm", "gemma2": "pre_feedforward_layernorm",
               "qwen3": "post_attention_layernorm"}.get(fam)
        hn = norm(x, W[p + pre + ".weight"], gem) if pre else x
        g = lin(hn, p + "mlp.gate_proj.weight")
        if gem:
            act = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
        else:
            act = g / (1 + np.exp(-g))
        mlp = act * lin(hn, p + "mlp.up_proj.weight")
        down = lin(mlp, p + "mlp.down_proj.weight")
        mlp_out = norm(down, W[p + "post_feedforward_layernorm.weight"], gem) if fam in ("gemma2", "olmo2") else down
        x = x + mlp_out
        hooks = dict(attn=attn, attn_out=attn_out, mlp=mlp, mlp_out=mlp_out, resid=x)
    if full:
        x = norm(x, W["model.norm.weight"], gem)
        head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
        z = x @ head.T
        if fam == "gemma2":
            c = cfg["final_logit_softcapping"]
            z = c * np.tanh(z / c)
        return z
    return hooks


# --------------------------------------------------------------------------
# reference.json
# --------------------------------------------------------------------------


def rel(a, b):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    return np.abs(a - b).max() / max(1.0, np.abs(b).max())


def block_ranges(L):
    """The hidden state after every block of the full model (1-k), every block alone (k-k), and 2-L."""
    out = [(1, k) for k in range(1, L + 1)] + [(k, k) for k in range(2, L + 1)] + [(2, L)]
    return sorted(set(out), key=out.index)


def make_reference(W, cfg, ids):
    L = cfg["num_hidden_layers"]
    table = W["model.embed_tokens.weight"]

    def tok():
        return table[torch.tensor(ids)].clone()

    cases = []
    for A, B in block_ranges(L):
        _, hooks = run(W, cfg, tok(), A, B)
        alt = numpy_run(W, cfg, ids, A, B, False)
        for hk in HOOKS:
            err = rel(hooks[hk], alt[hk])
            assert err < 1e-10, (cfg["family"], A, B, hk, err)
            o = hooks[hk]
            cases.append({"blocks": [A, B], "hook": hk, "shape": list(o.shape), "values": base.mat(o)})
    logits = logits_of(W, cfg, ids)
    err = rel(logits, numpy_run(W, cfg, ids, 1, L, True))
    assert err < 1e-10, (cfg["family"], "logits", err)
    cases.append({"blocks": None, "hook": "logits", "shape": list(logits.shape), "values": base.mat(logits)})

    grads = []
    for A, B in [(1, L), (2, 2)]:
        for hk in HOOKS:
            t0 = tok().requires_grad_(True)
            _, hooks = run(W, cfg, t0, A, B)
            val = hooks[hk][:, GRAD_FEATURE].sum()
            (g,) = torch.autograd.grad(val, t0)
            # central differences on one element of the table-space input
            t, d, h = len(ids) - 2, 5, 1e-6
            tp, tm = tok(), tok()
            tp[t, d] += h
            tm[t, d] -= h
            fd = (run(W, cfg, tp, A, B)[1][hk][:, GRAD_FEATURE].sum()
                  - run(W, cfg, tm, A, B)[1][hk][:, GRAD_FEATURE].sum()) / (2 * h)
            assert abs(fd.item() - g[t, d].item()) < 1e-6 * max(1.0, abs(fd.item())), (cfg["family"], A, B, hk, fd, g[t, d])
            grads.append({"blocks": [A, B], "hook": hk, "feature": GRAD_FEATURE,
                          "value": base.r9(val.item()), "grad": base.mat(g)})
    return {"ids": ids, "cases": cases, "grads": grads}


# --------------------------------------------------------------------------
# configs and weights, in the layouts the families ship
# --------------------------------------------------------------------------


def common_config(arch, model_type, *, hidden, inter, layers, heads, kv, vocab, theta, eps, tied):
    return {
        "architectures": [arch],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2 if model_type.startswith("gemma") else None,
        "eos_token_id": 1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 128,
        "model_type": model_type,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "rms_norm_eps": eps,
        "rope_scaling": None,
        "rope_theta": theta,
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": vocab,
    }


def weights(cfg):
    fam = cfg["family"]
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    gem = fam in ("gemma", "gemma2")

    def nw(n):  # Gemma stores the offset from 1; the others the scale itself
        return 0.1 * base.rnd(n) if gem else base.norm_w(n)

    W = {"model.embed_tokens.weight": base.rnd(V, D) * (0.3 if gem else 1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if fam != "olmo2":
            W[p + "input_layernorm.weight"] = nw(D)
        W[p + "self_attn.q_proj.weight"] = base.linear_w(nh * hd, D)
        W[p + "self_attn.k_proj.weight"] = base.linear_w(nkv * hd, D)
        W[p + "self_attn.v_proj.weight"] = base.linear_w(nkv * hd, D)
        W[p + "self_attn.o_proj.weight"] = base.linear_w(D, nh * hd)
        if fam == "qwen3":
            W[p + "self_attn.q_norm.weight"] = base.norm_w(hd)
            W[p + "self_attn.k_norm.weight"] = base.norm_w(hd)
        if fam == "olmo2":
            W[p + "self_attn.q_norm.weight"] = base.norm_w(nh * hd)
            W[p + "self_attn.k_norm.weight"] = base.norm_w(nkv * hd)
        if fam in ("gemma", "gemma2", "qwen3", "olmo2"):
            W[p + "post_attention_layernorm.weight"] = nw(D)
        if fam == "gemma2":
            W[p + "pre_feedforward_layernorm.weight"] = nw(D)
        if fam in ("gemma2", "olmo2"):
            W[p + "post_feedforward_layernorm.weight"] = nw(D)
        W[p + "mlp.gate_proj.weight"] = base.linear_w(I, D)
        W[p + "mlp.up_proj.weight"] = base.linear_w(I, D)
        W[p + "mlp.down_proj.weight"] = base.linear_w(D, I)
    W["model.norm.weight"] = nw(D)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = base.linear_w(V, D)
    return W


def ref_cfg(cfg, family):
    r = dict(cfg, family=family)
    r.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return r


def write_single(d, st, f64):
    base.write_safetensors(os.path.join(d, "model.safetensors"), st)
    base.check_roundtrip(d, ["model.safetensors"], f64)


def write_two_shards(d, st, f64):
    shard1 = {k: v for k, v in st.items() if k == "model.embed_tokens.weight" or k.startswith("model.layers.0.")}
    shard2 = {k: v for k, v in st.items() if k not in shard1}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    total = base.write_safetensors(os.path.join(d, names[0]), shard1)
    total += base.write_safetensors(os.path.join(d, names[1]), shard2)
    wm = {k: names[0] for k in shard1}
    wm.update({k: names[1] for k in shard2})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
        f.write("\n")
    base.check_roundtrip(d, names, f64)


def differs(a, b, what):
    d = (a - b).abs().max().item()
    assert d > 1e-3, (what, d)
    return d


def make(name, seed, cfg, family, sharded=False, checks=None):
    torch.manual_seed(seed)
    rc = ref_cfg(cfg, family)
    st, f64 = base.stored(weights(rc), torch.bfloat16)
    d = base.folder(name)  # under base.OUT, which main() points at our OUT
    base.write_config(d, cfg)
    (write_two_shards if sharded else write_single)(d, st, f64)
    ref = make_reference(f64, rc, IDS)
    info = checks(f64, rc) if checks else {}
    base.dump_reference(os.path.join(d, "reference.json"), ref)
    return d, info


def gemma_config():
    cfg = common_config("GemmaForCausalLM", "gemma", hidden=32, inter=64, layers=2, heads=4, kv=1,
                        vocab=96, theta=10000.0, eps=1e-6, tied=True)
    # head_dim 16: heads x head_dim = 64 != hidden 32 (Gemma-7B: 16 x 256 = 4096 != 3072)
    cfg.update({"head_dim": 16, "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": 0})
    return cfg


def gemma_checks(W, cfg):
    # the sqrt(d) scale and the (1 + w) offset must both matter
    lg = logits_of(W, cfg, IDS)
    no_scale = logits_of(W, dict(cfg, hidden_size=1), IDS)  # embed_scale(1) == 1
    return {"scale changes logits by": differs(lg, no_scale, "embedding scale")}


def gemma2_config():
    cfg = common_config("Gemma2ForCausalLM", "gemma2", hidden=32, inter=64, layers=3, heads=4, kv=2,
                        vocab=96, theta=10000.0, eps=1e-6, tied=True)
    cfg.update({
        "head_dim": 16,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "pad_token_id": 0,
        "query_pre_attn_scalar": 24,        # != head_dim: the scale is not 1/sqrt(head_dim)
        "attn_logit_softcapping": 0.8,      # small, so that the cap bends the scores
        "final_logit_softcapping": 2.0,     # below the raw logits' range
        "sliding_window": 3,                # shorter than the 8 reference tokens
        "cache_implementation": "hybrid",
    })
    return cfg


def gemma2_checks(W, cfg):
    info = {}
    tok = W["model.embed_tokens.weight"][torch.tensor(IDS)]
    for opt in ("window", "softcap"):
        a = run(W, cfg, tok, 1, 1)[1]["attn"]
        b = run(W, cfg, tok, 1, 1, {opt: False})[1]["attn"]
        info[f"block 1 attn without {opt}"] = differs(a, b, opt)
    # the window applies on layer 0 (even) but not on layer 1 (odd): block 2 alone must not depend on it
    a = run(W, cfg, tok, 2, 2)[1]["attn"]
    b = run(W, cfg, tok, 2, 2, {"window": False})[1]["attn"]
    assert (a - b).abs().max().item() == 0.0
    # the score cap is active: raw scaled scores exceed it
    p = "model.layers.0."
    x = tok * math.sqrt(cfg["hidden_size"])
    xn = rms(x, W[p + "input_layernorm.weight"], cfg["rms_norm_eps"], True)
    q = (xn @ W[p + "self_attn.q_proj.weight"].T)[:, :16]
    k = (xn @ W[p + "self_attn.k_proj.weight"].T)[:, :16]
    raw = (q @ k.T).abs().max().item() / math.sqrt(cfg["query_pre_attn_scalar"])
    assert raw > 2 * cfg["attn_logit_softcapping"], raw
    info["max |raw score| / attn cap"] = raw / cfg["attn_logit_softcapping"]
    lg = logits_of(W, cfg, IDS)
    raw_lg = logits_of(W, cfg, IDS, {"softcap": False})
    assert raw_lg.abs().max().item() > 1.5 * cfg["final_logit_softcapping"], raw_lg.abs().max()
    info["max |raw logit| / final cap"] = raw_lg.abs().max().item() / cfg["final_logit_softcapping"]
    differs(lg, logits_of(W, dict(cfg, query_pre_attn_scalar=cfg["head_dim"]), IDS), "query_pre_attn_scalar")
    return info


def qwen3_config():
    cfg = common_config("Qwen3ForCausalLM", "qwen3", hidden=32, inter=48, layers=2, heads=4, kv=2,
                        vocab=96, theta=1000000.0, eps=1e-6, tied=True)
    cfg.update({"head_dim": 16, "hidden_act": "silu", "max_window_layers": 2, "sliding_window": None,
                "use_sliding_window": False})
    return cfg


def qk_checks(W, cfg):
    tok = W["model.embed_tokens.weight"][torch.tensor(IDS)]
    a = run(W, cfg, tok, 1, 1)[1]["attn"]
    b = run(W, cfg, tok, 1, 1, {"qk_norm": False})[1]["attn"]
    return {"block 1 attn without the qk norm": differs(a, b, "qk norm")}


def olmo2_config():
    cfg = common_config("Olmo2ForCausalLM", "olmo2", hidden=32, inter=48, layers=3, heads=4, kv=2,
                        vocab=96, theta=500000.0, eps=1e-6, tied=False)
    cfg.update({"hidden_act": "silu", "pad_token_id": 1})
    return cfg


def olmo2_checks(W, cfg):
    info = qk_checks(W, cfg)
    # over the full projection is not per head: a per-head norm with the same weights gives other scores
    p = "model.layers.0."
    tok = W["model.embed_tokens.weight"][torch.tensor(IDS)]
    q = tok @ W[p + "self_attn.q_proj.weight"].T
    full = rms(q, W[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"], False)
    per_head = rms(q.view(len(IDS), 4, 8), W[p + "self_attn.q_norm.weight"].view(4, 8), cfg["rms_norm_eps"], False).reshape(len(IDS), 32)
    info["full vs per-head q norm"] = differs(full, per_head, "full vs per-head")
    return info


def main():
    os.makedirs(OUT, exist_ok=True)
    base.OUT = OUT
    made = [
        make("gemma-bf16", 1701, gemma_config(), "gemma", checks=gemma_checks),
        make("gemma2-window-bf16", 1702, gemma2_config(), "gemma2", checks=gemma2_checks),
        make("qwen3-bf16", 1703, qwen3_config(), "qwen3", checks=qk_checks),
        make("olmo2-bf16-sharded", 1704, olmo2_config(), "olmo2", sharded=True, checks=olmo2_checks),
    ]
    for d, info in made:
        files = sorted(os.listdir(d))
        size = sum(os.path.getsize(os.path.join(d, fn)) for fn in files)
        print(f"{os.path.relpath(d, ROOT)}: {size} bytes, {files}")
        for k, v in info.items():
            print(f"    {k}: {v:.4g}")


if __name__ == "__main__":
    main()
