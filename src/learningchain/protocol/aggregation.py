"""Aggregation rules as pure consensus functions (paper Eq. 14-16).

Every rule takes a :class:`Batch` (the messages of one block, in canonical order:
ascending message hash) and returns an :class:`Aggregate`: which messages it
selected and the gradient estimate it derives from them. Validators recompute
both and compare them with what the block claims, so every rule must give the
same answer on every machine:

* rankings use exact integers (dot products of the fixed-point unit vectors,
  computed in float64 on integer values whose partial sums stay below 2**53,
  see :mod:`learningchain.protocol.quantize`) and break ties by message hash;
* float arithmetic is elementwise IEEE in a fixed order (a loop over the selected
  messages in canonical order), never a reduction whose order a library chooses.

The gradient a rule returns is already divided by the batch size m, so the
update is ``w' = w - lr * (gradient + lam * w)`` for every rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ..errors import ConfigError
from .quantize import dequantize

__all__ = [
    "Batch",
    "Aggregate",
    "RULES",
    "register_rule",
    "get_rule",
    "check_rule",
    "aggregate",
    "compute_sum_vector",
    "compute_cosine_ranking",
    "compute_l_nearest",
    "weighted_unit_sum",
]


@dataclass(frozen=True)
class Batch:
    """Messages of one block as arrays, rows in canonical (message-hash) order."""

    q: np.ndarray  # (n, d) int32 fixed-point unit vectors
    norms: np.ndarray  # (n,) float64 reported norms s_k (Eq. 11)
    keys: tuple  # (n,) message hashes, the tie-break
    bits: int  # fixed-point scale 2**bits

    @property
    def n(self) -> int:
        return int(self.q.shape[0])

    @property
    def dim(self) -> int:
        return int(self.q.shape[1])


@dataclass(frozen=True)
class Aggregate:
    selection: tuple  # ascending indices into the batch of the messages that shaped the update
    gradient: np.ndarray  # (d,) float64, already divided by the batch size m


@dataclass(frozen=True)
class RuleSpec:
    name: str
    fn: Callable[[Batch, "object"], Aggregate]
    options: dict  # option name -> (type, check(value, params) -> error text or None)
    doc: str


RULES: dict[str, RuleSpec] = {}


def register_rule(name: str, *, options: dict | None = None):
    """Register ``fn(batch, params) -> Aggregate`` under ``name``."""

    def deco(fn):
        if name in RULES:
            raise ValueError(f"aggregation rule {name!r} registered twice")
        RULES[name] = RuleSpec(name, fn, options or {}, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def get_rule(name: str) -> RuleSpec:
    try:
        return RULES[name]
    except KeyError:
        raise ConfigError(f"unknown aggregator {name!r}; known: {', '.join(sorted(RULES))}") from None


def check_rule(params) -> None:
    """Raise ConfigError unless ``params`` names a known rule with valid options."""
    spec = get_rule(params.aggregator)
    for key, value in params.aggregator_options.items():
        if key not in spec.options:
            raise ConfigError(
                f"aggregator {spec.name!r} has no option {key!r}; its options: {sorted(spec.options) or 'none'}"
            )
        kind, check = spec.options[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"aggregator option {key!r} must be {kind.__name__}, got {value!r}")
        problem = check(value, params)
        if problem:
            raise ConfigError(f"aggregator option {key}={value!r}: {problem}")


def aggregate(batch: Batch, params) -> Aggregate:
    """Run the chain's rule on a batch (the single entry point validators use)."""
    if batch.n == 0:
        raise ConfigError("cannot aggregate an empty batch")
    return get_rule(params.aggregator).fn(batch, params)


# -- building blocks ---------------------------------------------------------------


def compute_sum_vector(q: np.ndarray) -> np.ndarray:
    """Eq. 14: v_s = sum_k q_k, exact in int64 (|v_s,i| <= n * 2**(bits+1))."""
    return q.astype(np.int64).sum(axis=0)  # integer sum: exact in any order


def _exact_int_dots(rows: np.ndarray, vec: np.ndarray) -> list[int]:
    # Integer-valued float64 matmul: every product and partial sum is an integer
    # below 2**53 (the unit-norm rule bounds it), so BLAS returns the exact value
    # whatever order or FMA use it picks.
    out = rows.astype(np.float64) @ vec.astype(np.float64)
    return [int(x) for x in out]


def _exact_sq_norms(rows: np.ndarray) -> list[int]:
    r = rows.astype(np.float64)
    return [int(x) for x in np.einsum("ij,ij->i", r, r)]  # integers < 2**53: exact


def compute_cosine_ranking(batch: Batch) -> list[int]:
    """Indices sorted by Eq. 15's cosine with the sum vector, nearest first.

    cos_k = (v_s . q_k) / (||v_s|| ||q_k||). ||v_s|| is common to all k, so the
    order is that of a_k / sqrt(n_k) with a_k = v_s . q_k and n_k = ||q_k||^2,
    compared exactly as the rational sign(a_k) a_k^2 / n_k. Ties go to the lower
    message hash.
    """
    v = compute_sum_vector(batch.q)
    dots = _exact_int_dots(batch.q, v)
    norms2 = _exact_sq_norms(batch.q)
    keys = [Fraction(a * abs(a), n2) if n2 else Fraction(0) for a, n2 in zip(dots, norms2)]
    return sorted(range(batch.n), key=lambda i: (-keys[i], batch.keys[i]))


def compute_l_nearest(batch: Batch, l: int) -> tuple:
    """Eq. 15: the l messages whose unit gradients are nearest (largest cosine) to v_s."""
    if l < 1:
        raise ConfigError(f"l must be >= 1, got {l}")
    ranking = compute_cosine_ranking(batch)
    return tuple(sorted(ranking[: min(l, batch.n)]))


def weighted_unit_sum(batch: Batch, indices, weights=None) -> np.ndarray:
    """sum_i w_i * s_i * (q_i / 2**bits) over ``indices`` in the given order.

    Elementwise IEEE operations in a fixed order: ``q_i / 2**bits`` is exact, then
    one rounding for the product with s_i (times the weight, when given) and one
    for the addition; no library reduction is involved.
    """
    acc = np.zeros(batch.dim, dtype=np.float64)
    for j, i in enumerate(indices):
        unit = dequantize(batch.q[i], batch.bits)
        coeff = float(batch.norms[i]) if weights is None else float(batch.norms[i]) * float(weights[j])
        acc = acc + coeff * unit
    return acc


# -- rules -------------------------------------------------------------------------


def _positive_upto_max(value, params):
    return None if value >= 1 else "must be >= 1"


@register_rule("l-nearest", options={"l": (int, _positive_upto_max)})
def aggregate_l_nearest(batch: Batch, params) -> Aggregate:
    """l-nearest (Eq. 14-16): average s_k * u_k over the l messages nearest the sum direction."""
    selection = compute_l_nearest(batch, params.l)
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(len(selection) * params.batch_size))


@register_rule("mean")
def aggregate_mean(batch: Batch, params) -> Aggregate:
    """mean: average s_k * u_k over every message (no Byzantine tolerance)."""
    selection = tuple(range(batch.n))
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(batch.n * params.batch_size))


def default_l(holders: int) -> int:
    return math.ceil(holders / 2)
