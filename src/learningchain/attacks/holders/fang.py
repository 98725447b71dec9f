"""Fang et al.'s local model poisoning attacks with full knowledge ("Local
Model Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX
Security 2020, Sec. 4.2), written for gradients: the attacker knows every
honest gradient of the round and the rule it attacks.

The paper crafts local models around the before-attack global model w; a
gradient step w - lr g moves parameter j in the direction -sign(g_j), so the
paper's "changing direction" s_j of parameter j is -sign(mean honest g_j)
and "the opposite direction" is a gradient pushing parameter j the other way.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...errors import ConfigError
from .base import AttackContext, HolderAttack, check_positive, honest_matrix, register_attack

__all__ = ["FangTrimmedMeanAttack", "FangKrumAttack", "fang_trimmed_mean_ranges", "krum_scores",
           "fang_krum_lambda_max"]


def fang_trimmed_mean_ranges(honest: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, the interval the crafted values are drawn from.

    Where the honest mean gradient is positive (the parameter would decrease),
    values below the honest minimum: [min/b, min] if min > 0, else [b min, min];
    elsewhere values above the honest maximum: [max, b max] if max > 0, else
    [max/b, max]."""
    mean = honest.mean(axis=0)
    lo_h, hi_h = honest.min(axis=0), honest.max(axis=0)
    below = mean > 0
    lo = np.where(below, np.where(lo_h > 0, lo_h / b, b * lo_h), np.where(hi_h > 0, hi_h, hi_h / b))
    hi = np.where(below, lo_h, np.where(hi_h > 0, b * hi_h, hi_h))
    return lo, hi


@register_attack("fang-trimmed-mean")
class FangTrimmedMeanAttack(HolderAttack):
    """Fang et al.'s full-knowledge attack on trimmed mean (and median): in
    every coordinate, a value beyond the honest extremes on the side opposite
    to the honest mean's sign, drawn uniformly from the paper's interval
    (:func:`fang_trimmed_mean_ranges`, b = 2 as in the paper); each attacker
    draws its own values."""

    omniscient = True

    def __init__(self, b: float = 2.0):
        self.b = check_positive("fang-trimmed-mean", "b", b)
        if not self.b > 1:
            raise ConfigError(f"fang-trimmed-mean attack needs b > 1, got {b!r}")

    def __call__(self, ctx: AttackContext) -> list:
        lo, hi = fang_trimmed_mean_ranges(honest_matrix(ctx, self.name), self.b)
        return [lo + ctx.rng.random(ctx.dim) * (hi - lo)]


def krum_scores(vectors: np.ndarray, f: int) -> np.ndarray:
    """Krum's score of each vector: the sum of its n - f - 2 smallest squared
    distances to the others (Blanchard et al. 2017)."""
    n = len(vectors)
    sq = np.einsum("ij,ij->i", vectors, vectors)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * vectors @ vectors.T, 0.0)
    np.fill_diagonal(dist, np.inf)
    k = max(1, min(n - f - 2, n - 1))
    return np.sort(dist, axis=1)[:, :k].sum(axis=1)


def fang_krum_lambda_max(honest: np.ndarray, c: int) -> float:
    """The paper's upper bound on lambda (Sec. 4.2, attacking Krum), with the
    zero gradient for the before-attack model:
    1/((m - 2c - 1) sqrt d) min_i sum_{l in Gamma_i} ||g_l - g_i|| + max_i ||g_i|| / sqrt d,
    m = honest + c, Gamma_i the m - c - 2 honest gradients nearest g_i
    (at most all the others); m - 2c - 1 is taken as at least 1."""
    n, d = honest.shape
    m = n + c
    sq = np.einsum("ij,ij->i", honest, honest)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * honest @ honest.T, 0.0))
    np.fill_diagonal(dist, np.inf)
    k = max(0, min(m - c - 2, n - 1))
    near = np.sort(dist, axis=1)[:, :k].sum(axis=1).min() if k else 0.0
    return float(near / (max(1, m - 2 * c - 1) * math.sqrt(d)) + np.sqrt(sq).max() / math.sqrt(d))


@register_attack("fang-krum")
class FangKrumAttack(HolderAttack):
    """Fang et al.'s full-knowledge attack on Krum: every attacker sends
    -lambda s, s = sign(sum of honest gradients), with lambda the largest of
    lambda_max, lambda_max / 2, lambda_max / 4, ... (down to ``threshold``,
    1e-5 as in the paper) for which Krum with f = ``f`` (by default the
    number of attackers) picks the crafted vector among the honest gradients
    and the attackers' identical copies; if none does, the last lambda tried."""

    omniscient = True

    def __init__(self, threshold: float = 1e-5, f: Optional[int] = None):
        self.threshold = check_positive("fang-krum", "threshold", threshold)
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
            raise ConfigError(f"fang-krum attack needs f >= 0, got {f!r}")
        self.f = f

    def crafted(self, honest: np.ndarray, c: int) -> tuple[float, np.ndarray]:
        """(lambda, the crafted gradient) for ``c`` attackers against ``honest``."""
        s = np.sign(honest.sum(axis=0))
        f = c if self.f is None else self.f
        lam = fang_krum_lambda_max(honest, c)
        while True:
            x = -lam * s
            scores = krum_scores(np.vstack([np.tile(x, (c, 1)), honest]), f)
            if scores[:c].min() < scores[c:].min() or lam / 2 < self.threshold:
                return lam, x
            lam /= 2

    def __call__(self, ctx: AttackContext) -> list:
        return [self.crafted(honest_matrix(ctx, self.name), max(1, ctx.byzantine_count))[1]]
