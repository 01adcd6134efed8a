#!/usr/bin/env python3
"""The same streaming kernels in numpy (float32, one thread, as numpy runs them), on arrays of
the same size as Constellation's largest batch. Prints {kernel: Mpx/s} as JSON."""
import json
import sys
import time

import numpy as np

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 24
rng = np.random.default_rng(7)
a = rng.uniform(0.0, 0.6, n).astype(np.float32)
b = rng.uniform(0.0, 0.3, n).astype(np.float32)
c = rng.uniform(0.0, 0.2, n).astype(np.float32)
qa = np.where(rng.uniform(0, 1, n) < 0.8, 21824, 22280).astype(np.float32)


def ndvi():
    with np.errstate(all="ignore"):
        r = (a - b) / (a + b)
    r[~np.isfinite(r)] = np.nan
    return r


def evi():
    with np.errstate(all="ignore"):
        r = np.float32(2.5) * (a - b) / (a + np.float32(6) * b - np.float32(7.5) * c + np.float32(1))
    r[~np.isfinite(r)] = np.nan
    return r


def scale():
    return a * np.float32(2.75e-5) + np.float32(-0.2)


def apply_mask():
    r = a.copy()
    r[(qa.astype(np.uint32) & 31) != 0] = np.nan
    return r


out = {}
for name, f in [("normalized_difference", ndvi), ("evi", evi), ("scale", scale), ("apply_mask", apply_mask)]:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    out[name] = n / best / 1e6
print(json.dumps(out))
