"""The drift benchmark's tables: 20 numeric and 5 categorical columns, 7 of them shifted in the current table.

Shifts are the kinds that matter in production and that a distance threshold alone tends to miss
at scale: a small mean shift, a variance change, a small contaminating cluster, a category that
gains share, a new category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SHIFTED = ["n0", "n1", "n2", "n3", "n4", "c0", "c1"]


def _categorical(rng: np.random.Generator, n: int, levels: int, probs: np.ndarray | None = None) -> np.ndarray:
    names = np.array([f"L{i:02d}" for i in range(levels)])
    if probs is None:
        probs = np.linspace(1, 2, levels)
        probs = probs / probs.sum()
    return names[rng.choice(levels, size=n, p=probs)]


def make_table(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    s = shifted
    cols["n0"] = rng.normal(0.25 if s else 0.0, 1.0, n)                    # mean +0.25 sd
    cols["n1"] = rng.normal(0.0, 1.5 if s else 1.0, n)                     # spread x1.5
    cols["n2"] = rng.normal(0.06 if s else 0.0, 1.0, n)                    # mean +0.06 sd
    cols["n3"] = rng.normal(0.0, 1.1 if s else 1.0, n)                     # spread x1.1
    n4 = rng.normal(0.0, 1.0, n)
    if s:                                                                  # 4% of rows from a +2 sd cluster
        hit = rng.random(n) < 0.04
        n4[hit] = rng.normal(2.0, 0.3, int(hit.sum()))
    cols["n4"] = n4
    for i in range(5, 20):                                                 # unshifted, assorted shapes
        kind = i % 4
        cols[f"n{i}"] = (rng.normal(i, 1 + i / 10, n) if kind == 0 else rng.lognormal(0, 0.5, n) if kind == 1
                         else rng.uniform(-i, i, n) if kind == 2 else rng.poisson(3 + i % 5, n).astype(np.float64))
    p0 = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
    if s:                                                                  # L00 gains share: 30% -> 36%
        p0 = np.array([0.36, 0.25, 0.20, 0.15, 0.10]) * np.array([1, 0.92, 0.92, 0.92, 0.92])
        p0 = p0 / p0.sum()
    cols["c0"] = _categorical(rng, n, 5, p0)
    c1 = _categorical(rng, n, 8)
    if s:                                                                  # a new category takes 5%
        c1[rng.random(n) < 0.05] = "NEW"
    cols["c1"] = c1
    for i, levels in zip(range(2, 5), (3, 12, 40), strict=True):
        cols[f"c{i}"] = _categorical(rng, n, levels)
    return pd.DataFrame(cols)
