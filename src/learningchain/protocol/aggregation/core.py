"""The records of aggregation and the rule registry.

A rule maps a :class:`Batch` (one block's messages, rows in canonical order) to
an :class:`Aggregate` (selection and gradient); :func:`aggregate` runs the
chain's rule, the one entry point validators use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional

import numpy as np
from scipy.linalg.blas import dsyrk

from ...errors import ConfigError

__all__ = ["Batch", "Aggregate", "RuleSpec", "RULES", "register_rule", "get_rule", "check_rule", "aggregate"]


@dataclass(frozen=True)
class Batch:
    """Messages of one block as arrays, rows in canonical (message-hash) order."""

    q: np.ndarray  # (n, d) int32 fixed-point unit vectors
    norms: np.ndarray  # (n,) float64 reported norms s_k (Eq. 11)
    keys: tuple  # (n,) message hashes, the tie-break
    bits: int  # fixed-point scale 2**bits
    round: int = 0  # the messages' round (height of the block they build on)
    #: exact ||q_k||^2 as integer-valued float64, when message validation has
    #: computed them (the unit check does); computed here otherwise
    sq_norms: Optional[np.ndarray] = None

    @property
    def n(self) -> int:
        return int(self.q.shape[0])

    @property
    def dim(self) -> int:
        return int(self.q.shape[1])

    @property
    def scale(self) -> float:
        """2**-bits, the weight of one fixed-point unit (a power of two: exact)."""
        return 1.0 / float(2**self.bits)

    # Derived arrays are cached properties: pure functions of the frozen fields,
    # computed at most once per batch.
    @cached_property
    def qf(self) -> np.ndarray:
        """The q's as float64 (exact: |q| < 2**31)."""
        return self.q.astype(np.float64)

    @cached_property
    def gram(self) -> np.ndarray:
        """G[a, b] = q_a . q_b, exact (see :func:`compute_gram`)."""
        qf = self.qf
        # half the work of a full matmul: the upper triangle, mirrored (exact either way)
        upper = np.triu(dsyrk(1.0, qf.T, trans=1))
        return upper + np.triu(upper, 1).T


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
    check: Optional[Callable] = None  # check(params) -> error text or None, for the rule as a whole


RULES: dict[str, RuleSpec] = {}


def register_rule(name: str, *, options: dict | None = None, check: Optional[Callable] = None):
    """Register ``fn(batch, params) -> Aggregate`` under ``name``."""

    def deco(fn):
        if name in RULES:
            raise ValueError(f"aggregation rule {name!r} registered twice")
        RULES[name] = RuleSpec(name, fn, options or {}, (fn.__doc__ or "").strip().splitlines()[0], check)
        return fn

    return deco


def get_rule(name: str) -> RuleSpec:
    try:
        return RULES[name]
    except KeyError:
        raise ConfigError(f"unknown aggregator {name!r}; known: {', '.join(sorted(RULES))}") from None


def _is_kind(value, kind) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:  # a TOML or JSON integer is a fine float option
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def check_rule(params) -> None:
    """Raise ConfigError unless ``params`` names a known rule with valid options."""
    spec = get_rule(params.aggregator)
    for key, value in params.aggregator_options.items():
        if key not in spec.options:
            raise ConfigError(
                f"aggregator {spec.name!r} has no option {key!r}; its options: {sorted(spec.options) or 'none'}"
            )
        kind, check = spec.options[key]
        if not _is_kind(value, kind):
            raise ConfigError(f"aggregator option {key!r} must be {kind.__name__}, got {value!r}")
        problem = check(value, params)
        if problem:
            raise ConfigError(f"aggregator option {key}={value!r}: {problem}")
    if spec.check is not None:
        problem = spec.check(params)
        if problem:
            raise ConfigError(f"aggregator {spec.name!r}: {problem}")


def aggregate(batch: Batch, params) -> Aggregate:
    """Run the chain's rule on a batch (the single entry point validators use)."""
    if batch.n == 0:
        raise ConfigError("cannot aggregate an empty batch")
    return get_rule(params.aggregator).fn(batch, params)
