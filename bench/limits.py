#!/usr/bin/python3
"""sgemm GFLOP/s of numpy's BLAS (Debian: OpenBLAS from libopenblas0-pthread when installed) for `npm run bench`.

    OPENBLAS_NUM_THREADS=2 [OPENBLAS_CORETYPE=...] /usr/bin/python3 bench/limits.py [--n 2048,3072] [--reps 5]

For each n: two n x n float32 matrices, one warm-up product, best of `reps`; GFLOP/s = 2 n^3 / time; the best size is
reported. Prints one JSON line with
the BLAS library and, for OpenBLAS, the core type its kernels were chosen for.
"""
import argparse
import ctypes
import json
import resource
import time

import numpy as np


def blas():
    out = {"numpy": np.__version__, "library": None, "core": None, "config": None}
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            out.update(library="openblas", core=lib.openblas_get_corename().decode(), config=lib.openblas_get_config().decode())
            return out
        except AttributeError:
            out["library"] = name
    return out


def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="2048,3072", help="comma-separated sizes; the best over all is reported")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    runs = []
    for n in (int(v) for v in a.n.split(",")):
        x = rng.standard_normal((n, n), dtype=np.float32)
        y = rng.standard_normal((n, n), dtype=np.float32)
        x @ y
        rates = []
        for _ in range(a.reps):
            t = time.perf_counter()
            x @ y
            rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
        runs.append({"n": n, "gflops": [round(r, 1) for r in rates], "best": max(rates)})
    best = max(runs, key=lambda r: r["best"])
    print(json.dumps({"n": best["n"], "gflops": best["gflops"], "best": best["best"], "runs": runs, "blas": blas(), "cpuMs": cpu_ms()}))


if __name__ == "__main__":
    main()
