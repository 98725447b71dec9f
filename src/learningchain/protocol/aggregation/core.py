"""The records of aggregation and the rule registry.

A rule maps a :class:`Batch` (one block's messages, rows in canonical order) to
an :class:`Aggregate` (selection and gradient); :func:`aggregate` runs the
chain's rule, the one entry point validators use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, ClassVar, Optional

import numpy as np
from scipy.linalg.blas import dsyrk

from ...errors import ConfigError

__all__ = ["Batch", "Aggregate", "RuleSpec", "RULES", "PRE_AGGREGATIONS", "PRE_OPTIONS", "parse_pre", "register_rule",
           "get_rule", "check_rule", "default_f"]


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
    #: the q's are fixed-point integers (a pre-aggregated batch of float vectors
    #: says False, see :mod:`.vectors`)
    integer_valued: ClassVar[bool] = True

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

    @property
    def has_float_copy(self) -> bool:
        """Whether :attr:`qf` exists already (a rule read it): a caller that can work a few
        rows at a time uses it then, and makes no (n, d) copy otherwise."""
        return "qf" in self.__dict__

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
    #: the largest block the rule affords, ``message_cap(options, holders) -> int | None``
    #: (None: any); genesis builders size max_messages by it
    message_cap: Optional[Callable] = None


#: The pre-aggregations every rule accepts (option ``pre``, e.g. "nnm", "arc+nnm"), see :mod:`.pre`.
PRE_AGGREGATIONS = ("nnm", "bucketing", "arc")


def parse_pre(value) -> tuple:
    """The pre-aggregation names of a ``pre`` option, in the order they apply."""
    return tuple(value.split("+")) if value else ()


def _check_pre(value, params):
    names = parse_pre(value)
    unknown = [n for n in names if n not in PRE_AGGREGATIONS]
    if not names or unknown:
        return f"must name pre-aggregations among {', '.join(PRE_AGGREGATIONS)}, joined by '+' (e.g. 'arc+nnm')"
    return None


def _check_at_least_one(value, params):
    return None if value >= 1 else "must be >= 1"


def _check_non_negative(value, params):
    return None if value >= 0 else "must be >= 0"


#: Options every rule accepts: the pre-aggregation, bucketing's bucket size s and the f
#: that NNM and ARC assume (default: the rule's own f option, else ceil(K/2) - 1).
PRE_OPTIONS = {"pre": (str, _check_pre), "bucket": (int, _check_at_least_one),
               "pre_f": (int, _check_non_negative)}


def _check_pre_options(params) -> Optional[str]:
    opts = params.aggregator_options
    names = parse_pre(opts.get("pre", ""))
    if "bucket" in opts and "bucketing" not in names:
        return "option 'bucket' needs pre = 'bucketing'"
    if "pre_f" in opts and not {"nnm", "arc"} & set(names):
        return "option 'pre_f' needs a pre-aggregation that uses f ('nnm' or 'arc')"
    return None


RULES: dict[str, RuleSpec] = {}


def register_rule(name: str, *, options: dict | None = None, check: Optional[Callable] = None,
                  message_cap: Optional[Callable] = None):
    """Register ``fn(batch, params) -> Aggregate`` under ``name`` (it also takes :data:`PRE_OPTIONS`)."""

    def deco(fn):
        if name in RULES:
            raise ValueError(f"aggregation rule {name!r} registered twice")
        RULES[name] = RuleSpec(name, fn, {**(options or {}), **PRE_OPTIONS},
                               (fn.__doc__ or "").strip().splitlines()[0], check, message_cap)
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
    for rule_check in (_check_pre_options, spec.check):
        problem = rule_check(params) if rule_check is not None else None
        if problem:
            raise ConfigError(f"aggregator {spec.name!r}: {problem}")


def default_f(holders: int) -> int:
    """ceil(K/2) - 1: the paper's honest-majority assumption."""
    return max(0, math.ceil(holders / 2) - 1)
