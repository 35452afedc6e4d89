#!/usr/bin/python3
"""Generate small random Hugging Face-layout checkpoints plus float64 reference
outputs, committed under test/fixtures/hf/ so CI needs no Python.

Run with Debian's python (torch + numpy only; no transformers / safetensors):

    /usr/bin/python3 scripts/make_hf_fixtures.py [outdir]

Every checkpoint folder holds config.json (as transformers would write it), the
weights as .safetensors (written by hand below), and reference.json:

    {"ids": [...],
     "cases": [{"blocks": [A, B] | null, "hook": "resid"|"mlp"|"attn"|"logits",
                "shape": [T, F], "values": [[...], ...]}, ...],
     "grads": [{"blocks": [A, B], "hook": H, "feature": f,
                "value": sum_t O[t, f], "grad": [[...] T rows of d_model]}]}

Hook semantics ("blocks A-B", 1-based inclusive): blocks A..B are applied
directly to the input embeddings E0 (Llama/Qwen2: embed_tokens[ids]; GPT-2:
wte[ids] + wpe[pos]).  Hooks are taken in the LAST block B:
  resid = block output (no final norm)
  mlp   = input of the down projection (silu(gate)*up ; gelu_new(c_fc(ln_2 x)))
  attn  = attention output after o_proj / c_proj (incl. bias), before residual add
  logits = the full model.
Grads are d value / d E0 (for GPT-2 this equals the gradient w.r.t. the token
embeddings wte[ids], the position embeddings being a constant added after).

All reference math is float64 on the weights as stored (rounded to bf16/f16).
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "test", "fixtures", "hf")

IDS = [1, 17, 42, 5, 88, 23, 64, 9]
GRAD_FEATURE = 3
TRANSFORMERS_VERSION = "4.44.0"

# --------------------------------------------------------------------------
# safetensors writer / reader
# --------------------------------------------------------------------------

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy().astype("<i2")
    elif t.dtype == torch.float16:
        arr = t.numpy().astype("<f2")
    elif t.dtype == torch.float32:
        arr = t.numpy().astype("<f4")
    else:
        raise ValueError(t.dtype)
    return arr.tobytes()


def write_safetensors(path, tensors):
    """tensors: dict name -> torch tensor in its storage dtype. Returns data bytes."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def read_safetensors(path):
    """Independent reader (numpy) used as a self-check: name -> float64 ndarray."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8:8 + n].decode("utf-8"))
    assert header.pop("__metadata__") == {"format": "pt"}
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[base + b: base + e]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif info["dtype"] == "BF16":
            u = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        else:
            raise ValueError(info["dtype"])
        out[name] = a.reshape(info["shape"])
    return out


# --------------------------------------------------------------------------
# random init
# --------------------------------------------------------------------------


def rnd(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def linear_w(out_f, in_f):
    return 0.2 * rnd(out_f, in_f)


def norm_w(n):
    return 1.0 + 0.1 * rnd(n)


def bias(n):
    return 0.1 * rnd(n)


def stored(tensors, dtype):
    """Round to storage dtype; return (stored tensors, float64 copies)."""
    st = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    f64 = {k: v.to(torch.float64) for k, v in st.items()}
    return st, f64


# --------------------------------------------------------------------------
# Llama / Qwen2 reference (torch float64, autograd-capable)
# --------------------------------------------------------------------------


def rope_inv_freq(cfg):
    hd = cfg["head_dim"]
    theta = cfg["rope_theta"]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs:
        assert rs["rope_type"] == "llama3"
        factor = rs["factor"]
        low, high = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def llama_block(x, W, cfg, i, hooks):
    p = f"model.layers.{i}."
    T, D = x.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * w

    def lin(v, name):
        y = v @ W[p + name + ".weight"].T
        if p + name + ".bias" in W:
            y = y + W[p + name + ".bias"]
        return y

    h = rms(x, W[p + "input_layernorm.weight"])
    q = lin(h, "self_attn.q_proj").view(T, nh, hd).transpose(0, 1)
    k = lin(h, "self_attn.k_proj").view(T, nkv, hd).transpose(0, 1)
    v = lin(h, "self_attn.v_proj").view(T, nkv, hd).transpose(0, 1)
    inv = rope_inv_freq(cfg)
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nh // nkv
    k = k.repeat_interleave(rep, dim=0)  # head h uses kv head h // rep
    v = v.repeat_interleave(rep, dim=0)
    s = q @ k.transpose(1, 2) / math.sqrt(hd)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    a = torch.softmax(s, -1) @ v
    a = a.transpose(0, 1).reshape(T, nh * hd)
    attn = lin(a, "self_attn.o_proj")
    x = x + attn
    h = rms(x, W[p + "post_attention_layernorm.weight"])
    g = lin(h, "mlp.gate_proj")
    mlp = torch.nn.functional.silu(g) * lin(h, "mlp.up_proj")
    x = x + lin(mlp, "mlp.down_proj")
    hooks.update(resid=x, mlp=mlp, attn=attn)
    return x


def llama_run(E0, W, cfg, A, B):
    hooks = {}
    x = E0
    for i in range(A - 1, B):
        x = llama_block(x, W, cfg, i, hooks)
    return x, hooks


def llama_embed(W, ids):
    return W["model.embed_tokens.weight"][torch.tensor(ids)]


def llama_logits(W, cfg, ids):
    x, _ = llama_run(llama_embed(W, ids), W, cfg, 1, cfg["num_hidden_layers"])
    eps = cfg["rms_norm_eps"]
    x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * W["model.norm.weight"]
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T


# Independent numpy implementation used only as a self-check: RoPE as an
# explicit complex rotation of the (i, i + d/2) pairs, GQA via index mapping.
def llama_numpy(Wt, cfg, ids, A, B, full):
    W = {k: v.numpy() for k, v in Wt.items()}
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    half = hd // 2
    # inv_freq recomputed independently, per-element
    inv = np.array([cfg["rope_theta"] ** (-(2.0 * j) / hd) for j in range(half)])
    rs = cfg.get("rope_scaling")
    if rs:
        new = []
        for f in inv:
            wl = 2 * math.pi / f
            hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
            lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
            if wl < hi_wl:
                new.append(f)
            elif wl > lo_wl:
                new.append(f / rs["factor"])
            else:
                sm = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (
                    rs["high_freq_factor"] - rs["low_freq_factor"])
                new.append((1 - sm) * f / rs["factor"] + sm * f)
        inv = np.array(new)
    rot = np.exp(1j * np.outer(np.arange(T), inv))  # [T, half]

    def rope(m):  # m [T, hd]
        z = (m[:, :half] + 1j * m[:, half:]) * rot
        return np.concatenate([z.real, z.imag], axis=1)

    def rms(v, w):
        return v / np.sqrt(np.mean(v ** 2, axis=1, keepdims=True) + eps) * w

    def lin(v, name):
        y = np.einsum("ti,oi->to", v, W[name + ".weight"])
        return y + W[name + ".bias"] if name + ".bias" in W else y

    x = W["model.embed_tokens.weight"][np.array(ids)]
    L = cfg["num_hidden_layers"]
    rng = range(L) if full else range(A - 1, B)
    hooks = {}
    for i in rng:
        p = f"model.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj")
        k = lin(h, p + "self_attn.k_proj")
        v = lin(h, p + "self_attn.v_proj")
        heads = []
        for hh in range(nh):
            kv = hh // (nh // nkv)
            qh = rope(q[:, hh * hd:(hh + 1) * hd])
            kh = rope(k[:, kv * hd:(kv + 1) * hd])
            vh = v[:, kv * hd:(kv + 1) * hd]
            o = np.zeros((T, hd))
            for t in range(T):
                sc = np.array([qh[t] @ kh[u] for u in range(t + 1)]) / math.sqrt(hd)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                o[t] = pr @ vh[: t + 1]
            heads.append(o)
        attn = lin(np.concatenate(heads, axis=1), p + "self_attn.o_proj")
        x = x + attn
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        mlp = g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj")
        x = x + lin(mlp, p + "mlp.down_proj")
        hooks = dict(resid=x, mlp=mlp, attn=attn)
    if full:
        x = rms(x, W["model.norm.weight"])
        head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
        return x @ head.T
    return hooks


# --------------------------------------------------------------------------
# GPT-2 reference
# --------------------------------------------------------------------------


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gpt2_block(x, W, cfg, i, hooks):
    p = f"h.{i}."
    T, D = x.shape
    nh = cfg["n_head"]
    hd = D // nh
    eps = cfg["layer_norm_epsilon"]

    def conv1d(v, name):
        return v @ W[p + name + ".weight"] + W[p + name + ".bias"]

    h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
    qkv = conv1d(h, "attn.c_attn")
    q, k, v = qkv.split(D, dim=-1)
    q, k, v = (t.view(T, nh, hd).transpose(0, 1) for t in (q, k, v))
    s = q @ k.transpose(1, 2) / math.sqrt(hd)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, D)
    attn = conv1d(a, "attn.c_proj")
    x = x + attn
    h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
    mlp = gelu_new(conv1d(h, "mlp.c_fc"))
    x = x + conv1d(mlp, "mlp.c_proj")
    hooks.update(resid=x, mlp=mlp, attn=attn)
    return x


def gpt2_run(E0, W, cfg, A, B):
    hooks = {}
    x = E0
    for i in range(A - 1, B):
        x = gpt2_block(x, W, cfg, i, hooks)
    return x, hooks


def gpt2_pos(W, T):
    return W["wpe.weight"][:T]


def gpt2_embed(W, ids):
    return W["wte.weight"][torch.tensor(ids)]


def gpt2_logits(W, cfg, ids):
    E0 = gpt2_embed(W, ids) + gpt2_pos(W, len(ids))
    x, _ = gpt2_run(E0, W, cfg, 1, cfg["n_layer"])
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], cfg["layer_norm_epsilon"])
    return x @ W["wte.weight"].T


def gpt2_numpy(Wt, cfg, ids, A, B, full):
    W = {k: v.numpy() for k, v in Wt.items()}
    D = cfg["n_embd"]
    nh = cfg["n_head"]
    hd = D // nh
    eps = cfg["layer_norm_epsilon"]
    T = len(ids)

    def ln(v, pre):
        mu = v.mean(1, keepdims=True)
        var = v.var(1, keepdims=True)
        return (v - mu) / np.sqrt(var + eps) * W[pre + ".weight"] + W[pre + ".bias"]

    def c1(v, pre):
        return np.einsum("ti,io->to", v, W[pre + ".weight"]) + W[pre + ".bias"]

    x = W["wte.weight"][np.array(ids)] + W["wpe.weight"][np.arange(T)]
    rng = range(cfg["n_layer"]) if full else range(A - 1, B)
    hooks = {}
    for i in rng:
        p = f"h.{i}."
        qkv = c1(ln(x, p + "ln_1"), p + "attn.c_attn")
        heads = []
        for hh in range(nh):
            qh = qkv[:, hh * hd:(hh + 1) * hd]
            kh = qkv[:, D + hh * hd:D + (hh + 1) * hd]
            vh = qkv[:, 2 * D + hh * hd:2 * D + (hh + 1) * hd]
            sc = qh @ kh.T / math.sqrt(hd)
            sc = np.where(np.tril(np.ones((T, T))) > 0, sc, -np.inf)
            pr = np.exp(sc - sc.max(1, keepdims=True))
            pr /= pr.sum(1, keepdims=True)
            heads.append(pr @ vh)
        attn = c1(np.concatenate(heads, 1), p + "attn.c_proj")
        x = x + attn
        f = c1(ln(x, p + "ln_2"), p + "mlp.c_fc")
        mlp = 0.5 * f * (1 + np.tanh(math.sqrt(2 / math.pi) * (f + 0.044715 * f ** 3)))
        x = x + c1(mlp, p + "mlp.c_proj")
        hooks = dict(resid=x, mlp=mlp, attn=attn)
    if full:
        return ln(x, "ln_f") @ W["wte.weight"].T
    return hooks


# --------------------------------------------------------------------------
# reference.json
# --------------------------------------------------------------------------


def r9(v):
    return float(f"{v:.9g}")


def mat(t):
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    return [[r9(v) for v in row] for row in a]


def block_ranges(L):
    rs = [(1, 1), (1, L), (2, 2), (2, L)]
    out = []
    for r in rs:
        if r not in out:
            out.append(r)
    return out


def make_reference(kind, W, cfg, ids):
    if kind == "llama":
        L = cfg["num_hidden_layers"]
        run, embed_tok = llama_run, (lambda: llama_embed(W, ids))
        pos = None
        logits_fn, np_fn = llama_logits, llama_numpy
    else:
        L = cfg["n_layer"]
        run, embed_tok = gpt2_run, (lambda: gpt2_embed(W, ids))
        pos = gpt2_pos(W, len(ids))
        logits_fn, np_fn = gpt2_logits, gpt2_numpy

    def e0_from(tok):
        return tok if pos is None else tok + pos

    cases = []
    for A, B in block_ranges(L):
        _, hooks = run(e0_from(embed_tok()), W, cfg, A, B)
        alt = np_fn(W, cfg, ids, A, B, False)
        for hk in ("resid", "mlp", "attn"):
            o = hooks[hk]
            err = np.abs(o.numpy() - alt[hk]).max() / max(1.0, np.abs(alt[hk]).max())
            assert err < 1e-10, (kind, A, B, hk, err)
            cases.append({"blocks": [A, B], "hook": hk, "shape": list(o.shape), "values": mat(o)})
    logits = logits_fn(W, cfg, ids)
    alt = np_fn(W, cfg, ids, 1, L, True)
    err = np.abs(logits.numpy() - alt).max() / max(1.0, np.abs(alt).max())
    assert err < 1e-10, (kind, "logits", err)
    cases.append({"blocks": None, "hook": "logits", "shape": list(logits.shape), "values": mat(logits)})

    grads = []
    for A, B in [(1, L), (2, 2)]:
        for hk in ("resid", "mlp", "attn"):
            tok = embed_tok().clone().requires_grad_(True)
            _, hooks = run(e0_from(tok), W, cfg, A, B)
            val = hooks[hk][:, GRAD_FEATURE].sum()
            (g,) = torch.autograd.grad(val, tok)
            # finite-difference spot check on one element
            t, d, eps = len(ids) - 2, 5, 1e-6
            tp = embed_tok().clone()
            tp[t, d] += eps
            tm = embed_tok().clone()
            tm[t, d] -= eps
            fd = (run(e0_from(tp), W, cfg, A, B)[1][hk][:, GRAD_FEATURE].sum()
                  - run(e0_from(tm), W, cfg, A, B)[1][hk][:, GRAD_FEATURE].sum()) / (2 * eps)
            assert abs(fd.item() - g[t, d].item()) < 1e-6 * max(1.0, abs(fd.item())), (kind, A, B, hk, fd, g[t, d])
            grads.append({"blocks": [A, B], "hook": hk, "feature": GRAD_FEATURE,
                          "value": r9(val.item()), "grad": mat(g)})
    return {"ids": ids, "cases": cases, "grads": grads}


def dump_reference(path, ref):
    # one case per line: compact but diff-friendly
    lines = ["{", f'"ids": {json.dumps(ref["ids"])},', '"cases": [']
    lines.append(",\n".join(json.dumps(c, separators=(",", ":")) for c in ref["cases"]))
    lines.append("],")
    lines.append('"grads": [')
    lines.append(",\n".join(json.dumps(g, separators=(",", ":")) for g in ref["grads"]))
    lines.append("]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.loads(open(path).read())  # validity


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def check_roundtrip(folder, files, f64):
    """Read every shard back with the independent reader and compare with the
    float64 weights the reference used."""
    seen = {}
    for fn in files:
        seen.update(read_safetensors(os.path.join(folder, fn)))
    assert set(seen) == set(f64), (set(seen) ^ set(f64))
    for k, v in f64.items():
        assert np.array_equal(seen[k], v.numpy()), k


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------


def llama_config(arch, model_type, *, hidden, inter, layers, heads, kv, vocab, theta,
                 max_pos, tied, dtype, eps, rope_scaling=None, head_dim=None):
    cfg = {
        "architectures": [arch],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "model_type": model_type,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "rms_norm_eps": eps,
        "rope_scaling": rope_scaling,
        "rope_theta": theta,
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
    if model_type == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1,
                    "head_dim": head_dim or hidden // heads})
    elif model_type == "qwen2":
        cfg.update({"max_window_layers": layers, "sliding_window": 4096,
                    "use_sliding_window": False})
    return cfg


def llama_weights(cfg, qkv_bias):
    D, I = cfg["hidden_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // nh
    V = cfg["vocab_size"]
    W = {"model.embed_tokens.weight": rnd(V, D)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = norm_w(D)
        W[p + "self_attn.q_proj.weight"] = linear_w(nh * hd, D)
        W[p + "self_attn.k_proj.weight"] = linear_w(nkv * hd, D)
        W[p + "self_attn.v_proj.weight"] = linear_w(nkv * hd, D)
        if qkv_bias:
            W[p + "self_attn.q_proj.bias"] = bias(nh * hd)
            W[p + "self_attn.k_proj.bias"] = bias(nkv * hd)
            W[p + "self_attn.v_proj.bias"] = bias(nkv * hd)
        W[p + "self_attn.o_proj.weight"] = linear_w(D, nh * hd)
        W[p + "post_attention_layernorm.weight"] = norm_w(D)
        W[p + "mlp.gate_proj.weight"] = linear_w(I, D)
        W[p + "mlp.up_proj.weight"] = linear_w(I, D)
        W[p + "mlp.down_proj.weight"] = linear_w(D, I)
    W["model.norm.weight"] = norm_w(D)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = linear_w(V, D)
    return W


def ref_cfg_llama(cfg):
    r = dict(cfg)
    r["head_dim"] = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return r


def folder(name):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(d):
        os.remove(os.path.join(d, fn))
    return d


def make_llama_gqa_bf16():
    torch.manual_seed(1001)
    cfg = llama_config("LlamaForCausalLM", "llama", hidden=32, inter=48, layers=3, heads=4, kv=2,
                       vocab=96, theta=10000.0, max_pos=128, tied=False, dtype="bfloat16", eps=1e-5)
    st, f64 = stored(llama_weights(cfg, False), torch.bfloat16)
    d = folder("llama-gqa-bf16")
    write_config(d, cfg)
    shard1 = {k: v for k, v in st.items()
              if k == "model.embed_tokens.weight" or k.startswith(("model.layers.0.", "model.layers.1."))}
    shard2 = {k: v for k, v in st.items() if k not in shard1}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    total = write_safetensors(os.path.join(d, names[0]), shard1)
    total += write_safetensors(os.path.join(d, names[1]), shard2)
    wm = {k: names[0] for k in shard1}
    wm.update({k: names[1] for k in shard2})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": dict(sorted(wm.items()))}, f, indent=2)
        f.write("\n")
    check_roundtrip(d, names, f64)
    dump_reference(os.path.join(d, "reference.json"), make_reference("llama", f64, ref_cfg_llama(cfg), IDS))
    return d


def make_qwen2_tied():
    torch.manual_seed(1002)
    cfg = llama_config("Qwen2ForCausalLM", "qwen2", hidden=32, inter=48, layers=2, heads=4, kv=2,
                       vocab=96, theta=1000000.0, max_pos=128, tied=True, dtype="float32", eps=1e-6)
    st, f64 = stored(llama_weights(cfg, True), torch.float32)
    assert "lm_head.weight" not in st
    d = folder("qwen2-tied")
    write_config(d, cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), st)
    check_roundtrip(d, ["model.safetensors"], f64)
    dump_reference(os.path.join(d, "reference.json"), make_reference("llama", f64, ref_cfg_llama(cfg), IDS))
    return d


def make_llama3_rope_scaling():
    torch.manual_seed(1003)
    rs = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
          "original_max_position_embeddings": 64, "rope_type": "llama3"}
    cfg = llama_config("LlamaForCausalLM", "llama", hidden=64, inter=32, layers=2, heads=4, kv=2,
                       vocab=96, theta=500000.0, max_pos=512, tied=True, dtype="float32", eps=1e-5,
                       rope_scaling=rs, head_dim=16)
    rc = ref_cfg_llama(cfg)
    assert rc["head_dim"] == 16
    # the scaling must change some frequencies (both the divided and the smoothed branch)
    base = rope_inv_freq(dict(rc, rope_scaling=None))
    scaled = rope_inv_freq(rc)
    unchanged = torch.isclose(base, scaled, rtol=0, atol=0)
    divided = torch.isclose(scaled, base / 8.0, rtol=1e-15, atol=0)
    medium = ~unchanged & ~divided
    assert unchanged.any() and divided.any() and medium.any(), (base, scaled)
    # ...and it must matter within the reference positions: the divided/smoothed
    # frequencies produce different angles at pos >= 1
    assert (base - scaled).abs().max() * (len(IDS) - 1) > 1e-3
    st, f64 = stored(llama_weights(cfg, False), torch.float32)
    d = folder("llama3-rope-scaling")
    write_config(d, cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), st)
    check_roundtrip(d, ["model.safetensors"], f64)
    ref = make_reference("llama", f64, rc, IDS)
    # self-check: without the scaling the logits differ
    no_scale = llama_logits(f64, dict(rc, rope_scaling=None), IDS)
    lg = torch.tensor(ref["cases"][-1]["values"])
    assert (no_scale - lg).abs().max() > 1e-3
    dump_reference(os.path.join(d, "reference.json"), ref)
    info = {"unchanged": int(unchanged.sum()), "smoothed": int(medium.sum()), "divided": int(divided.sum())}
    return d, info


def gpt2_config(dtype):
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 1,
        "embd_pdrop": 0.1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": 64,
        "n_embd": 32,
        "n_head": 4,
        "n_inner": None,
        "n_layer": 2,
        "n_positions": 64,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": 96,
    }


def gpt2_weights(cfg):
    D, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    W = {"wte.weight": rnd(V, D), "wpe.weight": rnd(P, D)}
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        W[p + "ln_1.weight"] = norm_w(D)
        W[p + "ln_1.bias"] = bias(D)
        # Conv1D layout: weight [in, out]
        W[p + "attn.c_attn.weight"] = linear_w(3 * D, D).T.contiguous()
        W[p + "attn.c_attn.bias"] = bias(3 * D)
        W[p + "attn.c_proj.weight"] = linear_w(D, D).T.contiguous()
        W[p + "attn.c_proj.bias"] = bias(D)
        W[p + "ln_2.weight"] = norm_w(D)
        W[p + "ln_2.bias"] = bias(D)
        W[p + "mlp.c_fc.weight"] = linear_w(4 * D, D).T.contiguous()
        W[p + "mlp.c_fc.bias"] = bias(4 * D)
        W[p + "mlp.c_proj.weight"] = linear_w(D, 4 * D).T.contiguous()
        W[p + "mlp.c_proj.bias"] = bias(D)
    W["ln_f.weight"] = norm_w(D)
    W["ln_f.bias"] = bias(D)
    return W


def make_gpt2():
    torch.manual_seed(1004)
    cfg16 = gpt2_config("float16")
    st16, f64 = stored(gpt2_weights(cfg16), torch.float16)
    assert st16["h.0.attn.c_attn.weight"].shape == (32, 96)
    assert st16["h.0.mlp.c_fc.weight"].shape == (32, 128)
    # gelu_new == torch's tanh-approximate gelu (sanity)
    xs = torch.linspace(-6, 6, 101)
    assert torch.allclose(gelu_new(xs), torch.nn.functional.gelu(xs, approximate="tanh"), atol=1e-12)
    ref = make_reference("gpt2", f64, cfg16, IDS)

    d16 = folder("gpt2-f16")
    write_config(d16, cfg16)
    write_safetensors(os.path.join(d16, "model.safetensors"), st16)
    check_roundtrip(d16, ["model.safetensors"], f64)
    dump_reference(os.path.join(d16, "reference.json"), ref)

    d32 = folder("gpt2-prefixed-f32")
    write_config(d32, gpt2_config("float32"))
    st32 = {"transformer." + k: v.to(torch.float32) for k, v in st16.items()}
    write_safetensors(os.path.join(d32, "model.safetensors"), st32)
    check_roundtrip(d32, ["model.safetensors"], {"transformer." + k: v for k, v in f64.items()})
    dump_reference(os.path.join(d32, "reference.json"), ref)
    return d16, d32


def main():
    os.makedirs(OUT, exist_ok=True)
    dirs = [make_llama_gqa_bf16(), make_qwen2_tied()]
    d3, info = make_llama3_rope_scaling()
    dirs.append(d3)
    dirs.extend(make_gpt2())
    print("llama3 inv_freq branches:", info)
    for d in dirs:
        files = sorted(os.listdir(d))
        sizes = {fn: os.path.getsize(os.path.join(d, fn)) for fn in files}
        print(f"{os.path.relpath(d, ROOT)}: {sum(sizes.values())} bytes  {sizes}")


if __name__ == "__main__":
    main()
