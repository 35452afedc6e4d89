#!/usr/bin/python3
"""PyTorch side of bench/gpu.sh: the original method's recipe on the same Hugging Face-layout checkpoint, on CUDA.

Llama blocks 1..L (RMSNorm, rotate-half RoPE as Hugging Face stores q/k, causal attention, SwiGLU) applied straight to
input embeddings; loss sum |100 - resid[:, :, f]|; backward to the embeddings; plain SGD, lr 2 -> 0.2. Weights do not
require gradients. Timed: one step at batch 1 (the original's one-feature-at-a-time loop) and batched, median of
--reps after warm-up, with CUDA synchronised around each step. TF32 is off, so float32 means float32.

With --check FILE (written by dist/bench/gpu-step.js --check-out) it also computes that fixed input's loss and
gradient in float32 and, where the GPU has room for a float64 copy of the weights, in float64, and reports the
relative error of llm-features' values against each. Prints one JSON line.

    python3 bench/gpu_torch.py --model DIR [--T 5] [--batches 1,8,32] [--reps 10] [--check FILE] [--device cuda]

The checkpoint is read with numpy from the safetensors header (no safetensors package needed).
"""
import argparse
import json
import math
import statistics
import struct
import time

import numpy as np
import torch

STEPS = 500


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", f"{name}: {e['dtype']} (this script reads F32 checkpoints)"
        a, b = e["data_offsets"]
        out[name] = (data, a, b, e["shape"])
    return out


def load(model_dir, device, dtype):
    cfg = json.load(open(f"{model_dir}/config.json"))
    raw = read_safetensors(f"{model_dir}/model.safetensors")

    def t(name):
        data, a, b, shape = raw[name]
        return torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(shape)).to(device=device, dtype=dtype)

    layers = []
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        layers.append({k: t(p + n) for k, n in [
            ("an", "input_layernorm.weight"), ("q", "self_attn.q_proj.weight"), ("k", "self_attn.k_proj.weight"),
            ("v", "self_attn.v_proj.weight"), ("o", "self_attn.o_proj.weight"), ("fn", "post_attention_layernorm.weight"),
            ("g", "mlp.gate_proj.weight"), ("u", "mlp.up_proj.weight"), ("d", "mlp.down_proj.weight")]})
    return cfg, layers


class Blocks:
    def __init__(self, cfg, layers, T, device, dtype):
        self.cfg, self.layers = cfg, layers
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads", self.H)
        self.hd = cfg["hidden_size"] // self.H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta", 10000.0)
        freqs = theta ** (-torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None, :]
        ang = torch.cat([ang, ang], dim=-1)  # rotate-half: pair i with i + hd/2
        self.cos = torch.cos(ang).to(device=device, dtype=dtype)
        self.sin = torch.sin(ang).to(device=device, dtype=dtype)
        self.mask = torch.full((T, T), float("-inf"), device=device, dtype=dtype).triu(1)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x):  # [B, H, T, hd]
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * self.cos + rot * self.sin

    def __call__(self, x):
        B, T, D = x.shape
        H, KV, hd = self.H, self.KV, self.hd
        for w in self.layers:
            xn = self.rms(x, w["an"])
            q = self.rope((xn @ w["q"].t()).view(B, T, H, hd).transpose(1, 2))
            k = self.rope((xn @ w["k"].t()).view(B, T, KV, hd).transpose(1, 2))
            v = (xn @ w["v"].t()).view(B, T, KV, hd).transpose(1, 2)
            if H // KV > 1:
                k = k.repeat_interleave(H // KV, dim=1)
                v = v.repeat_interleave(H // KV, dim=1)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + self.mask
            att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + att @ w["o"].t()
            hn = self.rms(x, w["fn"])
            x = x + (torch.nn.functional.silu(hn @ w["g"].t()) * (hn @ w["u"].t())) @ w["d"].t()
        return x


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(blocks, B, T, D, device, reps):
    g = torch.Generator(device="cpu").manual_seed(1000 + B)
    x = torch.randn(B, T, D, generator=g).to(device).requires_grad_(True)
    idx = torch.arange(B, device=device)
    i = [0]

    def step():
        lr = 2 + (0.2 - 2) * i[0] / (STEPS - 1)
        out = blocks(x)
        # problem b drives feature b (as the batched llm-features run does); B = 1 is the original's loop body
        loss = (100 - out[torch.arange(B), :, idx]).abs().sum()
        gx, = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x.sub_(lr * gx)
        i[0] += 1
        return loss

    for _ in range(2):
        step()
    sync(device)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    ms = statistics.median(times)
    return {"B": B, "T": T, "step_ms": ms, "per_feature_ms": ms / B, "features_per_s": B / (STEPS * ms / 1000)}


def check(model_dir, cfg, layers, path, device):
    c = json.load(open(path))
    T, D = c["T"], cfg["hidden_size"]
    ours_grad = torch.tensor(c["grad"], dtype=torch.float64)
    report = {}
    dtypes = [("float32", torch.float32)]
    if device.startswith("cuda"):
        weight_bytes = sum(w.numel() * 4 for l in layers for w in l.values())
        free, _ = torch.cuda.mem_get_info()
        if free > 2.2 * weight_bytes:
            dtypes.append(("float64", torch.float64))
    else:
        dtypes.append(("float64", torch.float64))
    for name, dt in dtypes:
        ls = layers if dt == torch.float32 else [{k: v.to(dt) for k, v in l.items()} for l in layers]
        x = torch.tensor(c["x"], dtype=dt, device=device).view(1, T, D).requires_grad_(True)
        out = Blocks(cfg, ls, T, device, dt)(x)
        loss = (c["C"] - out[:, :, c["feature"]]).abs().sum()
        gx, = torch.autograd.grad(loss, x)
        ref = gx.detach().double().cpu().flatten()
        report[name] = {
            "loss": loss.item(),
            "loss_rel_err": abs(c["loss"] - loss.item()) / abs(loss.item()),
            "grad_rel_err": ((ours_grad - ref).abs().max() / ref.abs().max()).item(),
        }
        del ls, x, out, loss, gx
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--T", type=int, default=5)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--check")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    cfg, layers = load(a.model, a.device, torch.float32)
    sync(a.device)
    load_s = time.perf_counter() - t0
    D = cfg["hidden_size"]
    blocks = Blocks(cfg, layers, a.T, a.device, torch.float32)
    results = [time_steps(blocks, int(B), a.T, D, a.device, a.reps) for B in a.batches.split(",")]
    out = {"tool": "pytorch", "torch": torch.__version__, "device": a.device, "load_s": load_s, "results": results}
    if a.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
        out["max_memory_allocated"] = torch.cuda.max_memory_allocated()
    if a.check:
        out["check"] = check(a.model, cfg, layers, a.check, a.device)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
