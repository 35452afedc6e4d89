#!/usr/bin/python3
"""Independent float64 PyTorch reference for the stories260K Llama.

Writes small JSON fixtures into test/fixtures/ that the TypeScript tests compare
against, so CI needs no Python:

  test/fixtures/stories260K-forward.json   hook outputs of block ranges + full logits
  test/fixtures/stories260K-grad.json      scalar objectives and d objective / d E0

Run from the project root with Debian's interpreter (python3-torch, python3-numpy):

  /usr/bin/python3 scripts/make_reference.py

The models directory is $LLMF_TEST_MODELS, defaulting to ../shared/models.

Everything here is written from the model description, not from the TS engine:
  * RMSNorm: x * rsqrt(mean(x^2) + 1e-5) * w
  * RoPE: theta 10000, INTERLEAVED pairs (2i, 2i+1) rotated by pos * theta^(-2i/head_dim),
    cos/sin computed here in float64 (the file's stored freq_cis is only cross-checked)
  * GQA: head h uses KV head h // (n_heads / n_kv_heads)
  * causal softmax attention, scale 1/sqrt(head_dim)
  * SwiGLU MLP: w2(silu(w1 x) * w3 x)
  * pre-norm residual blocks, final RMSNorm, output head tied to the token embeddings

Definitions shared with the TS engine:
  * "blocks A-B" (1-based, inclusive): apply blocks A..B directly to the token
    embeddings (blocks before A are skipped), positions 0..T-1.
  * hooks of the LAST block B: resid = block output; mlp = input of the down
    projection [T, ffn]; attn = attention output after wo, before the residual add [T, d].
  * logits = all blocks from the token embeddings + final norm + head [T, V].
"""

import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("LLMF_TEST_MODELS") or os.path.join(ROOT, "..", "shared", "models")
FIXTURES = os.path.join(ROOT, "test", "fixtures")

RMS_EPS = 1e-5
ROPE_THETA = 10000.0
BOS = 1

TEXT = "Once upon a time, Lily"
# The BOS-prefixed encoding of TEXT with tok512 (computed by encode() below and asserted).
IDS = [1, 403, 407, 261, 378, 432, 317]  # pieces: <s> "Once" " upon" " a" " time" "," " Lily"

README_SAMPLE = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to"
)

BLOCK_RANGES = [(1, 1), (1, 5), (3, 3), (2, 4)]
HOOKS = ["resid", "mlp", "attn"]


# ----------------------------------------------------------------------------------------------
# Loading


def load_llama2c(path):
    """llama2.c legacy (v0) checkpoint -> (config dict, dict of float64 tensors, (out, in) layout)."""
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // n_heads
    kv_dim = n_kv_heads * head_dim
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
               vocab=vocab, seq_len=seq_len, head_dim=head_dim, kv_dim=kv_dim, shared=shared)

    pos = 0
    w = {}

    def take(name, *shape):
        nonlocal pos
        n = int(np.prod(shape))
        w[name] = torch.from_numpy(data[pos:pos + n].astype(np.float64).reshape(shape))
        pos += n

    L = n_layers
    take("tok_emb", vocab, dim)
    take("rms_att", L, dim)
    take("wq", L, dim, dim)
    take("wk", L, kv_dim, dim)
    take("wv", L, kv_dim, dim)
    take("wo", L, dim, dim)
    take("rms_ffn", L, dim)
    take("w1", L, hidden, dim)
    take("w2", L, dim, hidden)
    take("w3", L, hidden, dim)
    take("rms_final", dim)
    take("freq_cis_real", seq_len, head_dim // 2)
    take("freq_cis_imag", seq_len, head_dim // 2)
    if shared:
        w["wcls"] = w["tok_emb"]
    else:
        take("wcls", vocab, dim)
    assert pos == data.size, f"{data.size - pos} trailing floats in {path}"
    return cfg, w


def load_tokenizer(path, vocab):
    """llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, i32 len, bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    (max_len,) = struct.unpack_from("<i", raw, 0)
    off = 4
    pieces, scores = [], []
    for _ in range(vocab):
        score, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off:off + n])
        scores.append(score)
        off += n
    assert off == len(raw)
    assert max(len(p) for p in pieces) <= max_len
    return pieces, scores


def decode_piece(pieces, prev, tok):
    """llama2.c decode(): strip the leading space after BOS, map <0xXX> to its raw byte."""
    p = pieces[tok]
    if prev == BOS and p.startswith(b" "):
        p = p[1:]
    if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
        p = bytes([int(p[3:5], 16)])
    return p


def encode(pieces, scores, text, bos=True):
    """llama2.c encode(): dummy-prefix space, per-UTF-8-char lookup with byte fallback (+3),
    then repeatedly merge the adjacent pair whose concatenation has the highest score."""
    lookup = {p: i for i, p in enumerate(pieces)}
    ids = []
    if text:
        ids.append(lookup[b" "])
    for ch in text:
        b = ch.encode("utf-8")
        if b in lookup:
            ids.append(lookup[b])
        else:
            ids.extend(x + 3 for x in b)
    while True:
        best, best_i, best_id = -1e10, -1, -1
        for i in range(len(ids) - 1):
            j = lookup.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if j is not None and scores[j] > best:
                best, best_i, best_id = scores[j], i, j
        if best_i < 0:
            break
        ids[best_i:best_i + 2] = [best_id]
    return ([BOS] if bos else []) + ids


# ----------------------------------------------------------------------------------------------
# Model


def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + RMS_EPS) * w


def rope_tables(T, head_dim):
    """cos/sin [T, head_dim/2] in float64: pair i (dims 2i, 2i+1) turns by pos * theta^(-2i/head_dim)."""
    i = torch.arange(0, head_dim, 2, dtype=torch.float64)
    inv_freq = ROPE_THETA ** (-i / head_dim)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(ang), torch.sin(ang)


def rope(x, cos, sin):
    """x [heads, T, head_dim]; interleaved pairs (x[2i], x[2i+1])."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack([y0, y1], dim=-1).flatten(-2)


def attention(cfg, w, l, x, cos, sin):
    """x [T, d] (already normed) -> output after wo, [T, d]."""
    T = x.shape[0]
    H, KV, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    q = (x @ w["wq"][l].T).view(T, H, hd).transpose(0, 1)   # [H, T, hd]
    k = (x @ w["wk"][l].T).view(T, KV, hd).transpose(0, 1)  # [KV, T, hd]
    v = (x @ w["wv"][l].T).view(T, KV, hd).transpose(0, 1)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    kv_of = torch.arange(H) // (H // KV)                     # GQA: head h -> kv head h // rep
    k, v = k[kv_of], v[kv_of]                                # [H, T, hd]
    s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                         # [H, T, hd]
    o = o.transpose(0, 1).reshape(T, H * hd)
    return o @ w["wo"][l].T


def block(cfg, w, l, x, cos, sin):
    """One pre-norm block (0-based index l). Returns dict of hook outputs."""
    attn = attention(cfg, w, l, rmsnorm(x, w["rms_att"][l]), cos, sin)
    h = x + attn
    hn = rmsnorm(h, w["rms_ffn"][l])
    mlp = torch.nn.functional.silu(hn @ w["w1"][l].T) * (hn @ w["w3"][l].T)
    out = h + mlp @ w["w2"][l].T
    return {"resid": out, "mlp": mlp, "attn": attn}


def forward_blocks(cfg, w, x, a, b):
    """Apply blocks a..b (1-based, inclusive) to x [T, d]; return the hooks of block b."""
    cos, sin = rope_tables(x.shape[0], cfg["head_dim"])
    hooks = None
    for l in range(a - 1, b):
        hooks = block(cfg, w, l, x, cos, sin)
        x = hooks["resid"]
    return hooks


def logits(cfg, w, ids):
    x = w["tok_emb"][torch.tensor(ids)]
    x = forward_blocks(cfg, w, x, 1, cfg["n_layers"])["resid"]
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def greedy(cfg, w, steps):
    """Greedy decoding from BOS; full recompute each step (tiny model). Returns generated ids (BOS excluded)."""
    ids = [BOS]
    for _ in range(steps):
        ids.append(int(torch.argmax(logits(cfg, w, ids)[-1])))
    return ids[1:]


# ----------------------------------------------------------------------------------------------
# Cross-checks


def read_gguf(path):
    """Minimal GGUF v2/v3 reader: returns {name: float32 ndarray (row-major, outer dims first)}."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:4] == b"GGUF"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", raw, 4)
    assert version in (2, 3)
    off = 24
    alignment = 32

    def rd(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, raw, off)
        off += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def rd_str():
        nonlocal off
        n = rd("<Q")
        s = raw[off:off + n]
        off += n
        return s.decode("utf-8", "replace")

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def rd_val(t):
        if t in scalar:
            return rd(scalar[t])
        if t == 8:
            return rd_str()
        if t == 9:
            et, n = rd("<I"), rd("<Q")
            return [rd_val(et) for _ in range(n)]
        raise ValueError(f"gguf value type {t}")

    meta = {}
    for _ in range(n_kv):
        key = rd_str()
        meta[key] = rd_val(rd("<I"))
    alignment = int(meta.get("general.alignment", alignment))
    infos = []
    for _ in range(n_tensors):
        name = rd_str()
        nd = rd("<I")
        ne = [rd("<Q") for _ in range(nd)]
        ttype, toff = rd("<I"), rd("<Q")
        infos.append((name, ne, ttype, toff))
    base = (off + alignment - 1) // alignment * alignment
    tensors = {}
    for name, ne, ttype, toff in infos:
        assert ttype == 0, f"{name}: only F32 handled (type {ttype})"
        n = int(np.prod(ne))
        arr = np.frombuffer(raw, dtype="<f4", count=n, offset=base + toff)
        tensors[name] = arr.reshape(list(reversed(ne)))
    return meta, tensors


def check_gguf(cfg, w, path):
    meta, t = read_gguf(path)
    f32 = lambda x: x.to(torch.float32).numpy()
    assert np.array_equal(t["token_embd.weight"], f32(w["tok_emb"]))
    assert np.array_equal(t["output_norm.weight"], f32(w["rms_final"]))
    if "output.weight" in t:
        assert np.array_equal(t["output.weight"], f32(w["wcls"]))
    names = {"attn_norm": "rms_att", "attn_q": "wq", "attn_k": "wk", "attn_v": "wv", "attn_output": "wo",
             "ffn_norm": "rms_ffn", "ffn_gate": "w1", "ffn_down": "w2", "ffn_up": "w3"}
    for l in range(cfg["n_layers"]):
        for g, b in names.items():
            assert np.array_equal(t[f"blk.{l}.{g}.weight"], f32(w[b][l])), f"blk.{l}.{g} differs"
    eps = meta.get("llama.attention.layer_norm_rms_epsilon")
    base = meta.get("llama.rope.freq_base", ROPE_THETA)
    assert eps is None or abs(eps - RMS_EPS) < 1e-12, eps
    assert abs(base - ROPE_THETA) < 1e-6, base
    return len(t)


def check_freq_cis(cfg, w):
    cos, sin = rope_tables(cfg["seq_len"], cfg["head_dim"])
    err = max(float((cos - w["freq_cis_real"]).abs().max()), float((sin - w["freq_cis_imag"]).abs().max()))
    return err


def check_block_skipping(cfg, w, ids):
    """forward_blocks(1, L) resid then head == logits; blocks A-B == blocks A..B applied one by one."""
    x = w["tok_emb"][torch.tensor(ids)]
    cos, sin = rope_tables(len(ids), cfg["head_dim"])
    y = x
    for l in (1, 2, 3):
        y = block(cfg, w, l, y, cos, sin)["resid"]
    assert torch.allclose(y, forward_blocks(cfg, w, x, 2, 4)["resid"], rtol=0, atol=0)
    # causality: the first k rows do not depend on later tokens
    full = logits(cfg, w, ids)
    part = logits(cfg, w, ids[:4])
    assert torch.allclose(full[:4], part, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Fixtures


def sig(x, digits=9):
    """Round to `digits` significant digits (as float, JSON-serialisable)."""
    return float(f"{x:.{digits - 1}e}")


def to_rows(t):
    return [[sig(v) for v in row] for row in t.tolist()]


def forward_fixture(cfg, w, ids):
    x = w["tok_emb"][torch.tensor(ids)]
    cases = []
    for a, b in BLOCK_RANGES:
        hooks = forward_blocks(cfg, w, x, a, b)
        for h in HOOKS:
            o = hooks[h]
            cases.append({"blocks": [a, b], "hook": h, "shape": list(o.shape), "values": to_rows(o)})
    lg = logits(cfg, w, ids)
    cases.append({"blocks": None, "hook": "logits", "shape": list(lg.shape), "values": to_rows(lg)})
    return {"model": "stories260K", "generator": "scripts/make_reference.py", "text": TEXT, "ids": ids,
            "cases": cases}


def grad_case(cfg, w, ids, a, b, hook, position=None, feature=None, objective="sum", C=None):
    e0 = w["tok_emb"][torch.tensor(ids)].clone().requires_grad_(True)
    o = forward_blocks(cfg, w, e0, a, b)[hook]
    sel = o
    if position is not None:
        sel = sel[position:position + 1]
    if feature is not None:
        sel = sel[:, feature:feature + 1]
    if objective == "sum":
        value = sel.sum()
    elif objective == "l1":
        value = (C - sel).abs().sum()
    else:
        raise ValueError(objective)
    (g,) = torch.autograd.grad(value, e0)
    case = {"blocks": [a, b], "hook": hook, "select": {"position": position, "feature": feature},
            "objective": objective}
    if C is not None:
        case["C"] = C
    case["value"] = sig(float(value))
    case["grad"] = to_rows(g)
    return case, value, g, e0


def check_grad_fd(cfg, w, ids):
    """Central finite differences on a few coordinates of two cases (float64): a sum and the l1 objective."""
    checks = [
        ((2, 4, "mlp"), dict(feature=3), lambda o: o[:, 3].sum()),
        ((1, 2, "resid"), dict(feature=3, objective="l1", C=100), lambda o: (100 - o[:, 3]).abs().sum()),
    ]
    worst = 0.0
    for (a, b, hook), kw, f in checks:
        _, value, g, e0 = grad_case(cfg, w, ids, a, b, hook, **kw)
        e = e0.detach()
        for (t, j) in [(0, 0), (2, 5), (len(ids) - 1, 63), (3, 17)]:
            eps = 1e-6
            ep, em = e.clone(), e.clone()
            ep[t, j] += eps
            em[t, j] -= eps
            fd = float(f(forward_blocks(cfg, w, ep, a, b)[hook]) - f(forward_blocks(cfg, w, em, a, b)[hook])) / (2 * eps)
            worst = max(worst, abs(fd - float(g[t, j])) / max(1e-8, abs(float(g[t, j]))))
    return worst


def grad_fixture(cfg, w, ids):
    cases = []
    for a, b in BLOCK_RANGES:
        for h in HOOKS:
            cases.append(grad_case(cfg, w, ids, a, b, h, feature=3)[0])
    for a, b, h in [(1, 1, "resid"), (2, 4, "mlp"), (3, 3, "attn"), (1, 5, "resid")]:
        cases.append(grad_case(cfg, w, ids, a, b, h, position=2)[0])
    # the original method's Llama loss: L1 distance of one feature to C = 100, summed over positions
    cases.append(grad_case(cfg, w, ids, 1, 2, "resid", feature=3, objective="l1", C=100)[0])
    return {"model": "stories260K", "generator": "scripts/make_reference.py", "text": TEXT, "ids": ids,
            "input": "E0 = token_embedding[ids]", "cases": cases}


def write_json(name, obj):
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    return path, os.path.getsize(path)


# ----------------------------------------------------------------------------------------------


def main():
    torch.manual_seed(0)
    model_path = os.path.join(MODELS, "stories260K.bin")
    cfg, w = load_llama2c(model_path)
    print("config:", cfg)
    assert (cfg["dim"], cfg["hidden"], cfg["n_layers"], cfg["n_heads"], cfg["n_kv_heads"], cfg["vocab"]) == \
        (64, 172, 5, 8, 4, 512), cfg
    assert cfg["shared"], "stories260K is expected to tie its output head"

    pieces, scores = load_tokenizer(os.path.join(MODELS, "tok512.bin"), cfg["vocab"])

    # stored freq_cis must agree with our own float64 tables (to f32 precision)
    err = check_freq_cis(cfg, w)
    print(f"freq_cis vs float64 RoPE tables: max abs err {err:.2e}")
    assert err < 1e-5

    # GGUF holds the same weights
    gguf = os.path.join(MODELS, "stories260K.gguf")
    if os.path.exists(gguf):
        n = check_gguf(cfg, w, gguf)
        print(f"GGUF: {n} tensors, all bit-identical to the .bin")

    # greedy sample from BOS must reproduce the README text
    gen = greedy(cfg, w, 80)
    prev, out, texts = BOS, b"", []
    for t in gen:
        out += decode_piece(pieces, prev, t)
        texts.append(out.decode("utf-8", "replace"))
        prev = t
    text = texts[-1]
    print("greedy, 80 generated tokens after BOS:")
    print(text)
    exact = [i + 1 for i, s in enumerate(texts) if s == README_SAMPLE]
    print("generated-token counts that give exactly the README text:", exact)
    assert text == README_SAMPLE, "greedy sample differs from the README"

    # encode the prompt
    ids = encode(pieces, scores, TEXT)
    print(f"text {TEXT!r} -> ids {ids}")
    dec, prev = b"", BOS
    for t in ids[1:]:
        dec += decode_piece(pieces, prev, t)
        prev = t
    assert dec.decode() == TEXT, dec
    print("pieces:", [pieces[t].decode("utf-8", "replace") for t in ids])
    assert ids == IDS, f"encoding {ids} differs from the hard-coded IDS {IDS}"

    check_block_skipping(cfg, w, ids)
    fd = check_grad_fd(cfg, w, ids)
    print(f"autograd vs finite differences: worst rel err {fd:.2e}")
    assert fd < 1e-5

    for name, obj in [("stories260K-forward.json", forward_fixture(cfg, w, ids)),
                      ("stories260K-grad.json", grad_fixture(cfg, w, ids))]:
        path, size = write_json(name, obj)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]
        print(f"wrote {os.path.relpath(path, ROOT)}: {len(obj['cases'])} cases, {size} bytes, sha256 {digest}")


if __name__ == "__main__":
    sys.exit(main())
