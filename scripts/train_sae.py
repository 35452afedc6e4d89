#!/usr/bin/python3
"""Train a small TopK sparse autoencoder on stories260K's residual stream, and write its float64 references.

  /usr/bin/python3 scripts/train_sae.py test/fixtures/sae-stories260K-train-samples.txt

The committed training text is 120 samples of the model itself, made with
  node dist/src/cli/entry.js generate --model ../shared/models/stories260K.bin --samples 20 --seed 1000 --max-tokens 200 --out a.txt
  node dist/src/cli/entry.js generate --model ../shared/models/stories260K.bin --samples 100 --seed 1020 --max-tokens 200 --out b.txt
and joined (a, then b).

Training data is text the model itself wrote (`generate --samples`), never the TinyStories corpus in
../shared/corpora/, which stays held out: the script reports the SAE's L0 and fraction of variance explained
on it as the evaluation.

Writes (SAELens layout, readable by `--sae`):
  test/fixtures/sae-stories260K/cfg.json                architecture topk, hook blocks.2.hook_resid_post
  test/fixtures/sae-stories260K/sae_weights.safetensors W_enc [64, 512], b_enc, W_dec [512, 64], b_dec (F32)
  test/fixtures/sae-stories260K/training.json           loss curve, L0, FVE (train and held-out)
  test/fixtures/sae-stories260K-reference.json          float64 pre/post latents for a text, and d latent / d E0

The model forward is make_reference.py's (written from the model description, float64); the SAE encode is SAELens's
definition: pre = (x - b_dec) @ W_enc + b_enc, post = relu(pre) at the k largest pre of each token, 0 elsewhere.
"""

import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as ref  # noqa: E402  (the float64 stories260K forward and tokenizer)

torch.set_default_dtype(torch.float64)

BLOCKS = 3                 # blocks 1..3: TransformerLens blocks.2.hook_resid_post
HOOK_NAME = f"blocks.{BLOCKS - 1}.hook_resid_post"
D_SAE = 512
K = 8
STEPS = int(os.environ.get("SAE_STEPS", "1500"))  # override only to try the script quickly
BATCH = 512
LR = 1e-3
SEED = 0
OUT = os.path.join(ref.FIXTURES, "sae-stories260K")
HELD_OUT = os.path.join(ref.ROOT, "..", "shared", "corpora", "tinystories-valid-head.txt")
REF_LATENT = 7             # the latent whose gradient the reference holds (chosen below if inactive)


def stories(path):
    text = open(path, encoding="utf-8").read()
    return [s.strip("\n") for s in text.split("\n<|endoftext|>\n") if s.strip()]


def activations(cfg, w, pieces, scores, texts):
    """Residual stream after block BLOCKS at every position >= 1 (BOS at 0, the attention sink, left out)."""
    rows = []
    for s in texts:
        ids = ref.encode(pieces, scores, s.replace("<|endoftext|>", "").strip(), bos=True)[: cfg["seq_len"]]
        if len(ids) < 2:
            continue
        x = w["tok_emb"][torch.tensor(ids)]
        with torch.no_grad():
            rows.append(ref.forward_blocks(cfg, w, x, 1, BLOCKS)["resid"][1:])
    return torch.cat(rows)


def encode(p, x):
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    top = torch.topk(pre, K, dim=-1)
    post = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    return pre, post


def decode(p, post):
    return post @ p["W_dec"] + p["b_dec"]


def fve(p, x):
    with torch.no_grad():
        _, post = encode(p, x)
        err = ((decode(p, post) - x) ** 2).sum()
        var = ((x - x.mean(0)) ** 2).sum()
        return float(1 - err / var), float((post > 0).sum(-1).double().mean()), int(((post > 0).sum(0) == 0).sum())


def train(x):
    torch.manual_seed(SEED)
    d = x.shape[1]
    x = x.float()
    W_dec = torch.randn(D_SAE, d, dtype=torch.float32)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1
    p = {
        "W_enc": W_dec.T.clone().requires_grad_(True),
        "b_enc": torch.zeros(D_SAE, dtype=torch.float32).requires_grad_(True),
        "W_dec": W_dec.clone().requires_grad_(True),
        "b_dec": x.mean(0).clone().requires_grad_(True),  # geometric-median-free init: the mean
    }
    opt = torch.optim.Adam(p.values(), lr=LR)
    g = torch.Generator().manual_seed(SEED)
    curve = []
    last_fired = torch.zeros(D_SAE, dtype=torch.long)
    for step in range(STEPS):
        idx = torch.randint(0, x.shape[0], (BATCH,), generator=g)
        xb = x[idx]
        pre, post = encode(p, xb)
        rec = decode(p, post)
        mse = ((rec - xb) ** 2).sum(-1).mean()
        # AuxK (Gao et al. 2024): latents silent for 200 steps reconstruct the residual with their own top k.
        dead = (step - last_fired) > 200
        aux = torch.zeros((), dtype=torch.float32)
        if dead.any():
            masked = pre.masked_fill(~dead, float("-inf"))
            kk = min(2 * K, int(dead.sum()))
            t = torch.topk(masked, kk, dim=-1)
            a = torch.zeros_like(pre).scatter(-1, t.indices, torch.relu(t.values))
            aux = (((a @ p["W_dec"]) - (xb - rec).detach()) ** 2).sum(-1).mean()
        loss = mse + aux / 32
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            p["W_dec"] /= p["W_dec"].norm(dim=1, keepdim=True)
            last_fired[(post > 0).any(0)] = step
        if step % 250 == 0 or step == STEPS - 1:
            curve.append([step, float(mse)])
    return {k: v.detach().double() for k, v in p.items()}, curve


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = np.ascontiguousarray(t.detach().numpy().astype("<f4")).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cfg, w = ref.load_llama2c(os.path.join(ref.MODELS, "stories260K.bin"))
    pieces, scores = ref.load_tokenizer(os.path.join(ref.MODELS, "tok512.bin"), cfg["vocab"])
    x = activations(cfg, w, pieces, scores, stories(sys.argv[1]))
    held = activations(cfg, w, pieces, scores, stories(HELD_OUT))
    print(f"train tokens {x.shape[0]}, held-out tokens {held.shape[0]}")
    p, curve = train(x)
    # The fixture is float32: evaluate and reference exactly the weights the file holds.
    p = {k: v.float().double() for k, v in p.items()}
    train_fve, train_l0, train_dead = fve(p, x)
    held_fve, held_l0, held_dead = fve(p, held)
    print(f"FVE train {train_fve:.4f} held-out {held_fve:.4f}; L0 {train_l0:.2f}/{held_l0:.2f}; dead {train_dead}/{held_dead}")

    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, "sae_weights.safetensors"), p)
    sae_cfg = {
        "architecture": "topk", "k": K, "d_in": cfg["dim"], "d_sae": D_SAE, "hook_name": HOOK_NAME,
        "hook_layer": BLOCKS - 1, "hook_head_index": None, "apply_b_dec_to_input": True,
        "normalize_activations": "none", "dtype": "float32", "model_name": "stories260K",
        "context_size": cfg["seq_len"], "prepend_bos": True, "activation_fn_str": "relu",
        "finetuning_scaling_factor": False, "sae_lens_version": None,
        "trained_by": "llm-features scripts/train_sae.py",
    }
    ref.write_json(os.path.join("sae-stories260K", "cfg.json"), sae_cfg)
    ref.write_json(os.path.join("sae-stories260K", "training.json"), {
        "generator": "scripts/train_sae.py", "train_corpus": "generate --samples (model-sampled text)",
        "train_tokens": int(x.shape[0]), "held_out": "tinystories-valid-head.txt", "held_out_tokens": int(held.shape[0]),
        "steps": STEPS, "batch": BATCH, "lr": LR, "k": K, "d_sae": D_SAE, "loss": "sum-of-squares MSE per token (+ AuxK/32)",
        "loss_curve": curve, "final_loss": curve[-1][1],
        "train": {"fve": train_fve, "l0": train_l0, "dead": train_dead},
        "held_out_eval": {"fve": held_fve, "l0": held_l0, "dead": held_dead},
        "positions": "every position >= 1 (BOS excluded)",
    })

    # float64 references on the shared reference text (make_reference.py's IDS).
    ids = ref.IDS
    e0 = w["tok_emb"][torch.tensor(ids)].clone().requires_grad_(True)
    h = ref.forward_blocks(cfg, w, e0, 1, BLOCKS)["resid"]
    pre, post = encode(p, h)
    latent = REF_LATENT
    if not (post[:, latent] > 0).any():
        latent = int(torch.argmax((post > 0).sum(0)))
    (g_pre,) = torch.autograd.grad(pre[:, latent].sum(), e0, retain_graph=True)
    (g_post,) = torch.autograd.grad(post[:, latent].sum(), e0)
    ref.write_json("sae-stories260K-reference.json", {
        "generator": "scripts/train_sae.py", "sae": "sae-stories260K", "blocks": [1, BLOCKS], "hook": "resid",
        "text": ref.TEXT, "ids": ids, "input": "E0 = token_embedding[ids]",
        "pre": ref.to_rows(pre), "post": ref.to_rows(post),
        "latent": latent, "pre_sum": ref.sig(float(pre[:, latent].sum())), "post_sum": ref.sig(float(post[:, latent].sum())),
        "grad_pre_sum": ref.to_rows(g_pre), "grad_post_sum": ref.to_rows(g_post),
    })


if __name__ == "__main__":
    main()
