"""Aggregation rules as pure consensus functions (paper Eq. 14-16, and the rules
the Byzantine-robust learning literature compares against).

Every rule takes a :class:`Batch` (the messages of one block, in canonical order:
ascending message hash) and returns an :class:`Aggregate`: which messages it
selected and the gradient estimate it derives from them. Validators recompute
both and compare them with what the block claims, so every rule must give the
same answer on every machine (DESIGN.md section 3):

* rankings use exact integers (dot products of the fixed-point unit vectors,
  computed in float64 on integer values whose partial sums stay below 2**53,
  see :mod:`learningchain.protocol.quantize`) and break ties by message hash;
* float arithmetic is elementwise IEEE (+, -, *, /, sqrt, each correctly
  rounded) in an order the code fixes: a loop over rows in a stated order, a
  pairwise tree of elementwise additions, never a reduction whose order a
  library chooses. Sorting and selecting order statistics are exact.

Message k stands for the vector ``x_k = s_k * u_k`` with ``u_k = q_k / 2**bits``.
Distances between messages come from the exact Gram matrix of the q's:
``||x_a - x_b||^2 = p_a^2 G_aa + p_b^2 G_bb - 2 p_a p_b G_ab`` with
``p_k = s_k 2**-bits``, evaluated elementwise in that fixed formula.

The gradient a rule returns is already divided by the batch size m, so the
update is ``w' = w - lr * (gradient + lam * w)`` for every rule.

Rules with an ``f`` option (the number of Byzantine messages the rule is set to
tolerate) default to ``ceil(K/2) - 1`` for K = ``params.holders``: the paper's
honest-majority assumption, the same tolerance l-nearest's default
``l = ceil(K/2)`` implies. Each rule clamps ``f`` to the largest value its own
definition allows for the number n of messages actually in the block (Krum
needs n >= 2f + 3, Bulyan n >= 4f + 3, trimmed mean n >= 2f + 1), so a small or
Sybil-inflated block never makes a rule undefined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional

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
    "compute_gram",
    "compute_squared_distances",
    "compute_krum_scores",
    "weighted_unit_sum",
    "coordinate_values",
    "coordinate_columns",
    "fixed_order_row_sums",
    "norm_bound",
    "default_f",
]


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
        try:
            from scipy.linalg.blas import dsyrk
        except ImportError:  # pragma: no cover - scipy comes with scikit-learn
            return qf @ qf.T
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


# -- building blocks ---------------------------------------------------------------


def _qf(batch: Batch) -> np.ndarray:
    """The q's as float64 (exact: |q| < 2**31), converted once per batch."""
    return batch.qf


def compute_sum_vector(q: np.ndarray) -> np.ndarray:
    """Eq. 14: v_s = sum_k q_k, exact in int64 (|v_s,i| <= n * 2**(bits+1))."""
    return q.astype(np.int64).sum(axis=0)  # integer sum: exact in any order


def compute_gram(batch: Batch) -> np.ndarray:
    """G[a, b] = q_a . q_b, exact.

    Integer-valued float64 matmul: every product and partial sum is an integer
    below 2**53 (the unit-norm rule bounds |q_a . q_b| and, by Cauchy-Schwarz,
    every partial sum by about 2**(2*bits)), so BLAS returns the exact value
    whatever order, blocking or FMA use it picks.
    """
    return batch.gram


def _ordering_keys(numerators: list, denominators: list) -> list:
    """Integers whose order is exactly the order of the rationals p_i / n_i (n_i > 0).

    Two distinct rationals with denominators at most N differ by at least 1/N^2,
    so after scaling by 2^S with 2^S >= 2 N^2 their floors are strictly ordered
    (and equal rationals give equal floors): an exact comparison without
    Fraction objects.
    """
    top = max(denominators, default=1)
    shift = 2 * max(1, int(top).bit_length()) + 1
    return [(p << shift) // n if n else 0 for p, n in zip(numerators, denominators)]


def _hash_ranks(keys: tuple) -> np.ndarray:
    n = len(keys)
    if all(keys[i] < keys[i + 1] for i in range(n - 1)):  # canonical order: the usual case
        return np.arange(n)
    ranks = np.empty(n, dtype=np.int64)
    ranks[sorted(range(n), key=keys.__getitem__)] = np.arange(n)
    return ranks


def _rank_cosine_keys(a: np.ndarray, n2: np.ndarray, keys: tuple) -> list:
    """Indices by descending a_k |a_k| / n_k (exact), ties to the lower key.

    ``a`` and ``n2`` hold exact integers in float64, n2 >= 0 (a zero n2 ranks
    as 0). The order is found with float keys ``(a*|a|)/n2``: two roundings,
    so each is within 3 ulps of the largest key's magnitude of its exact value;
    neighbours closer than twice that are re-ordered with exact integer keys
    (:func:`_ordering_keys`), so the result is the exact order whatever the
    rounding, and float keys only make the usual case fast.
    """
    n = len(keys)
    with np.errstate(divide="ignore", invalid="ignore"):
        approx = np.where(n2 > 0, (a * np.abs(a)) / np.where(n2 > 0, n2, 1.0), 0.0)
    ranks = _hash_ranks(keys)
    order = np.lexsort((ranks, -approx))
    if n < 2:
        return order.tolist()
    err = 3.0 * 2.0**-53 * float(np.max(np.abs(approx)))
    ordered = approx[order]
    close = (ordered[:-1] - ordered[1:]) <= 2.0 * err
    if not close.any():
        return order.tolist()
    order = order.tolist()
    i = 0
    while i < n - 1:
        if not close[i]:
            i += 1
            continue
        j = i
        while j < n - 1 and close[j]:
            j += 1
        group = order[i:j + 1]  # a run of neighbours the float keys cannot separate
        ints = [int(a[k]) for k in group]
        exact = _ordering_keys([x * abs(x) for x in ints], [int(n2[k]) for k in group])
        pos = dict(zip(group, exact))
        order[i:j + 1] = sorted(group, key=lambda k: (-pos[k], ranks[k]))
        i = j + 1
    return order


def _cosine_terms(batch: Batch) -> tuple:
    """(a_k, n_k) = (v_s . q_k, ||q_k||^2) as exact integer-valued float64.

    |v_s,i| <= n 2^(bits+1) and every partial sum of a_k or n_k is an integer
    below 2^53 (quantize.max_exact_messages), so the BLAS results are exact.
    """
    qf = _qf(batch)
    v = np.ones(batch.n) @ qf  # Eq. 14 as a BLAS matvec: integers, so exact
    a = qf @ v
    n2 = batch.sq_norms if batch.sq_norms is not None else np.einsum("ij,ij->i", qf, qf)
    return a, n2


def compute_cosine_ranking(batch: Batch) -> list[int]:
    """Indices sorted by Eq. 15's cosine with the sum vector, nearest first.

    cos_k = (v_s . q_k) / (||v_s|| ||q_k||). ||v_s|| is common to all k, so the
    order is that of a_k / sqrt(n_k) with a_k = v_s . q_k and n_k = ||q_k||^2,
    compared exactly as the rational sign(a_k) a_k^2 / n_k. Ties go to the lower
    message hash.
    """
    a, n2 = _cosine_terms(batch)
    return _rank_cosine_keys(a, np.asarray(n2, dtype=np.float64), batch.keys)


def compute_l_nearest(batch: Batch, l: int) -> tuple:
    """Eq. 15: the l messages whose unit gradients are nearest (largest cosine) to v_s."""
    if l < 1:
        raise ConfigError(f"l must be >= 1, got {l}")
    ranking = compute_cosine_ranking(batch)
    return tuple(sorted(ranking[: min(l, batch.n)]))


def weighted_unit_sum(batch: Batch, indices, weights=None, norms=None) -> np.ndarray:
    """sum_i w_i * s_i * (q_i / 2**bits) over ``indices`` in the given order.

    Elementwise IEEE operations in a fixed order: one rounding for the product
    of the coefficient with the unit vector and one for the addition, row after
    row; no library reduction is involved. ``norms`` replaces the reported norms
    (the norm-bounded rule passes capped ones).

    The coefficient absorbs the exact power-of-two scale 2**-bits, so each row
    costs one multiply and one in-place add on the float64 copy of q; the
    product is the same real number as ``s_i * (q_i / 2**bits)`` and so rounds
    to the same double. Where folding the scale would underflow (a norm below
    about 2**(bits-1022)) the two-step form is used instead.
    """
    qf = _qf(batch)
    norms = batch.norms if norms is None else norms
    scale = batch.scale
    unscale = float(2**batch.bits)
    acc = np.zeros(batch.dim, dtype=np.float64)
    term = np.empty(batch.dim, dtype=np.float64)
    for j, i in enumerate(indices):
        coeff = float(norms[i]) if weights is None else float(norms[i]) * float(weights[j])
        folded = coeff * scale
        if folded * unscale == coeff:
            np.multiply(qf[i], folded, out=term)
        else:
            np.multiply(dequantize(batch.q[i], batch.bits), coeff, out=term)
        np.add(acc, term, out=acc)
    return acc


def coordinate_values(batch: Batch, rows=None, norms=None) -> np.ndarray:
    """The matrix of x_k = s_k * (q_k / 2**bits), one row per message (elementwise)."""
    qf = _qf(batch) if rows is None else _qf(batch)[list(rows)]
    norms = batch.norms if norms is None else norms
    if rows is not None:
        norms = np.asarray(norms)[list(rows)]
    return _scale_by_norms(qf, np.asarray(norms, dtype=np.float64)[:, None], batch, out=None)


def coordinate_columns(batch: Batch, rows=None) -> np.ndarray:
    """The same values as :func:`coordinate_values`, transposed: one row per
    coordinate (C-contiguous), so per-coordinate sorts run on contiguous memory."""
    q = batch.q if rows is None else batch.q[list(rows)]
    norms = batch.norms if rows is None else np.asarray(batch.norms)[list(rows)]
    cols = np.empty((q.shape[1], q.shape[0]), dtype=np.float64)
    cols[...] = q.T
    return _scale_by_norms(cols, np.asarray(norms, dtype=np.float64)[None, :], batch, out=cols)


def _scale_by_norms(values: np.ndarray, norms: np.ndarray, batch: Batch, *, out) -> np.ndarray:
    """values (the integers q) * s * 2**-bits, rounding once (``out=values``: in place).

    Folding the exact power-of-two scale into the norms gives the same real
    product as ``s * (q * 2**-bits)`` and so the same double; where folding
    would underflow the two steps are done separately.
    """
    folded = norms * batch.scale
    if np.array_equal(folded * float(2**batch.bits), norms):
        return np.multiply(values, folded, out=out)
    res = np.multiply(values, batch.scale, out=out)
    return np.multiply(res, norms, out=res)


def _sum_columns_in_order(cols: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per row of ``cols``, cols[lo] + cols[lo+1] + ... + cols[hi-1], left to right."""
    rows = np.ascontiguousarray(cols[:, lo:hi].T)
    acc = rows[0].copy()
    for r in range(1, hi - lo):
        acc += rows[r]
    return acc


def _middle(sorted_cols: np.ndarray) -> np.ndarray:
    """Median of each row of a row-sorted matrix; the two middle values of an
    even count are averaged as ``a*0.5 + b*0.5`` (exact halvings, one rounding,
    no overflow)."""
    n = sorted_cols.shape[1]
    if n % 2:
        return sorted_cols[:, n // 2].copy()
    return sorted_cols[:, n // 2 - 1] * 0.5 + sorted_cols[:, n // 2] * 0.5


def fixed_order_row_sums(a: np.ndarray) -> np.ndarray:
    """Row sums of a float matrix by a pairwise tree of elementwise additions.

    The columns are padded with zeros to a power of two and halved repeatedly
    (column j + column j + w/2): the order of every addition is fixed by the
    code, not by a library, so the result is the same on every machine.
    """
    a = np.asarray(a, dtype=np.float64)
    work = _tree_buffer(*a.shape)
    work[:, : a.shape[1]] = a
    return _tree_sum(work)


def _tree_buffer(n: int, d: int) -> np.ndarray:
    width = 1
    while width < d:
        width *= 2
    return np.zeros((n, width), dtype=np.float64)


def _tree_sum(work: np.ndarray) -> np.ndarray:
    """Halve a zero-padded (n, 2^k) buffer in place down to its first column.
    Padding columns only ever receive zeros, so the buffer can be refilled."""
    width = work.shape[1]
    while width > 1:
        half = width // 2
        np.add(work[:, :half], work[:, half:width], out=work[:, :half])
        width = half
    return work[:, 0].copy()


def compute_squared_distances(batch: Batch, norms=None) -> np.ndarray:
    """D[a, b] = ||x_a - x_b||^2 from the exact Gram matrix, elementwise.

    ``p_a^2 G_aa + p_b^2 G_bb - (2 p_a) p_b G_ab`` with ``p = s 2**-bits``; the
    formula is symmetric operation by operation, so D is exactly symmetric.
    Rounding can make a tiny distance negative: it is raised to 0. A distance
    that overflows (absurd norms) is +inf, never NaN.
    """
    g = compute_gram(batch)
    norms = batch.norms if norms is None else np.asarray(norms, dtype=np.float64)
    p = norms * batch.scale
    sq = (p * p) * np.diagonal(g)
    cross = (2.0 * p)[:, None] * p[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        d = (sq[:, None] + sq[None, :]) - cross * g
    d[np.isnan(d)] = np.inf
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def _sum_smallest(dist: np.ndarray, k: int) -> np.ndarray:
    """Per row, the sum of its k smallest off-diagonal entries, added smallest first."""
    n = dist.shape[0]
    if k <= 0 or n <= 1:
        return np.zeros(n)
    work = dist.copy()
    np.fill_diagonal(work, np.inf)
    ordered = np.sort(work, axis=1)  # exact; the diagonal's inf sorts last
    # accumulate is defined as the left-to-right recurrence r[j] = r[j-1] + a[j]
    return np.add.accumulate(ordered[:, :k], axis=1)[:, k - 1].copy()


def _krum_neighbours(n: int, f: int) -> int:
    """n - f - 2 nearest neighbours (Blanchard et al. 2017), at least 1 when n >= 2."""
    if n <= 1:
        return 0
    return min(n - 1, max(1, n - f - 2))


def compute_krum_scores(batch: Batch, f: int, norms=None) -> np.ndarray:
    """Krum score of every message: sum of squared distances to its n - f - 2 nearest."""
    return _sum_smallest(compute_squared_distances(batch, norms), _krum_neighbours(batch.n, f))


def _rank(values, keys) -> list:
    """Indices by ascending value, ties to the lower message hash."""
    values = [float(v) for v in values]
    return sorted(range(len(values)), key=lambda i: (values[i], keys[i]))


def default_f(holders: int) -> int:
    """ceil(K/2) - 1: the paper's honest-majority assumption."""
    return max(0, math.ceil(holders / 2) - 1)


def _option_f(params) -> int:
    return int(params.aggregator_options.get("f", default_f(params.holders)))


def default_l(holders: int) -> int:
    return math.ceil(holders / 2)


def norm_bound(params, t: int, *, tail: float = 20.0) -> float:
    """Largest norm s_k an honest holder reports in round t (1-based), but for
    probability at most exp(-tail) per message.

    The clipped gradient has norm at most m*G (per-example clipping: a sum of m
    vectors of norm <= G) or G (the literal Eq. 9), and the noise norm r obeys:

    * l2-laplace (Eq. 10): r ~ Gamma(d, theta), theta = 2G / eps_t, and a
      Gamma variable is sub-gamma with variance factor d theta^2 and scale theta
      (Boucheron, Lugosi, Massart, Sec. 2.4), so
      P(r >= theta (d + sqrt(2 d x) + x)) <= exp(-x);
    * gaussian: r^2 ~ sigma^2 chi2_d with sigma = z * 2G, and Laurent-Massart
      (2000, Lemma 1) gives P(r^2 >= sigma^2 (d + 2 sqrt(d x) + 2 x)) <= exp(-x).

    Only +, *, / and sqrt appear (each correctly rounded), in this fixed order,
    so every validator computes the same bound bit for bit.
    """
    from ..privacy.schedules import epsilon_for_round

    g = float(params.clip)
    if params.clip_mode == "none":
        raise ConfigError("no norm bound without clipping")
    signal = float(params.batch_size) * g if params.clip_mode == "per-example" else g
    d = float(params.dim)
    x = float(tail)
    if params.mechanism == "none":
        return signal
    if params.mechanism == "l2-laplace":
        eps_t = epsilon_for_round(params.schedule, float(params.epsilon), t, params.rounds)
        theta = (2.0 * g) / eps_t
        return signal + theta * ((d + math.sqrt(2.0 * d * x)) + x)
    if params.mechanism == "gaussian":
        sigma = float(params.noise_multiplier) * (2.0 * g)
        return signal + sigma * math.sqrt((d + 2.0 * math.sqrt(d * x)) + 2.0 * x)
    raise ConfigError(f"no norm bound for mechanism {params.mechanism!r}")


# -- option checks -----------------------------------------------------------------


def _positive_upto_max(value, params):
    return None if value >= 1 else "must be >= 1"


def _non_negative(value, params):
    return None if value >= 0 else "must be >= 0"


def _positive_float(value, params):
    return None if value > 0 else "must be > 0"


# -- rules -------------------------------------------------------------------------


@register_rule("l-nearest", options={"l": (int, _positive_upto_max)})
def aggregate_l_nearest(batch: Batch, params) -> Aggregate:
    """l-nearest (Eq. 14-16): average s_k * u_k over the l messages nearest the sum direction."""
    selection = compute_l_nearest(batch, params.l)
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(len(selection) * params.batch_size))


def _bounded_check(params):
    if params.clip_mode == "none" and "bound" not in params.aggregator_options:
        return ("without clipping no norm bound follows from the chain's parameters: give clipping "
                "(--clip-mode per-example) or an explicit bound (--set aggregator_options={bound=...})")
    if (params.mechanism == "gaussian" and not params.noise_multiplier > 0
            and "bound" not in params.aggregator_options):
        return ("with the gaussian mechanism it needs the chain's noise_multiplier (or an explicit "
                "bound, --set aggregator_options={bound=...}): the classic calibration involves a logarithm, "
                "which is not bit-exact across machines")
    return None


@register_rule("l-nearest-bounded",
               options={"l": (int, _positive_upto_max), "bound": (float, _positive_float),
                        "tail": (float, _positive_float)},
               check=_bounded_check)
def aggregate_l_nearest_bounded(batch: Batch, params) -> Aggregate:
    """l-nearest with each reported norm capped at the honest bound (see norm_bound).

    Eq. 16 trusts s_k; a Byzantine holder can send an honest-looking direction
    (selected by Eq. 15, which ignores norms) with a huge norm. Capping s_k at
    the largest norm an honest holder can report (``min(s_k, B)``, exact)
    bounds what any one message can move the model by, and leaves honest
    messages untouched but for probability exp(-tail) each.
    """
    opts = params.aggregator_options
    bound = float(opts["bound"]) if "bound" in opts else norm_bound(
        params, batch.round + 1, tail=float(opts.get("tail", 20.0)))
    capped = np.minimum(batch.norms, bound)
    selection = compute_l_nearest(batch, params.l)
    total = weighted_unit_sum(batch, selection, norms=capped)
    return Aggregate(selection, total / float(len(selection) * params.batch_size))


@register_rule("mean")
def aggregate_mean(batch: Batch, params) -> Aggregate:
    """mean: average s_k * u_k over every message (no Byzantine tolerance)."""
    selection = tuple(range(batch.n))
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(batch.n * params.batch_size))


@register_rule("median")
def aggregate_median(batch: Batch, params) -> Aggregate:
    """median: coordinate-wise median of the x_k (Yin et al. 2018).

    Every message takes part in every coordinate's order statistics, so the
    selection is all of them. For even n the two middle values are averaged as
    ``a*0.5 + b*0.5``.
    """
    cols = np.sort(coordinate_columns(batch), axis=1)  # exact
    return Aggregate(tuple(range(batch.n)), _middle(cols) / float(params.batch_size))


@register_rule("trimmed-mean", options={"f": (int, _non_negative)})
def aggregate_trimmed_mean(batch: Batch, params) -> Aggregate:
    """trimmed-mean: per coordinate, drop the f largest and f smallest x_k and average the rest.

    Yin et al. 2018. The kept values are added in ascending order; f is clamped
    to (n - 1) // 2. Every message takes part, so the selection is all of them.
    """
    n = batch.n
    f = min(_option_f(params), (n - 1) // 2)
    cols = np.sort(coordinate_columns(batch), axis=1)
    total = _sum_columns_in_order(cols, f, n - f)
    return Aggregate(tuple(range(n)), total / float((n - 2 * f) * params.batch_size))


@register_rule("krum", options={"f": (int, _non_negative)})
def aggregate_krum(batch: Batch, params) -> Aggregate:
    """krum: the one message with the smallest sum of squared distances to its n-f-2 nearest.

    Blanchard et al. 2017; f is clamped to (n - 3) // 2, scores tie to the lower hash.
    """
    f = min(_option_f(params), max(0, (batch.n - 3) // 2))
    best = _rank(compute_krum_scores(batch, f), batch.keys)[0]
    total = weighted_unit_sum(batch, (best,))
    return Aggregate((best,), total / float(params.batch_size))


def _check_m(value, params):
    return None if value >= 1 else "must be >= 1"


@register_rule("multi-krum", options={"f": (int, _non_negative), "m": (int, _check_m)})
def aggregate_multi_krum(batch: Batch, params) -> Aggregate:
    """multi-krum: average of the m messages with the best Krum scores (default m = n - f).

    Blanchard et al. 2017; f is clamped to (n - 3) // 2 and m to 1..n.
    """
    n = batch.n
    f = min(_option_f(params), max(0, (n - 3) // 2))
    m = int(params.aggregator_options.get("m", n - f))
    m = max(1, min(m, n))
    selection = tuple(sorted(_rank(compute_krum_scores(batch, f), batch.keys)[:m]))
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(m * params.batch_size))


def compute_bulyan_selection(batch: Batch, f: int) -> tuple:
    """Bulyan's first stage: theta = n - 2f messages picked one by one by Krum,
    each time among those not yet picked (El Mhamdi et al. 2018)."""
    n = batch.n
    dist = compute_squared_distances(batch)
    remaining = list(range(n))
    chosen = []
    for _ in range(n - 2 * f):
        sub = dist[np.ix_(remaining, remaining)]
        scores = _sum_smallest(sub, _krum_neighbours(len(remaining), f))
        pick = remaining[_rank(scores, [batch.keys[i] for i in remaining])[0]]
        chosen.append(pick)
        remaining.remove(pick)
    return tuple(sorted(chosen))


def _nearest_window(sorted_cols: np.ndarray, med: np.ndarray, beta: int) -> np.ndarray:
    """Per row of a row-sorted matrix, the start of the beta values nearest the
    row's median, nearer first and, at equal distance, the smaller value first.

    |x - med| falls towards the middle of a sorted row and rises after it, so
    those values are a contiguous window, grown one value at a time from the
    middle by comparing the nearest value left of it with the nearest right of
    it (equal distances on one side mean equal values, so which of them is
    taken does not change the sum).
    """
    rows, theta = sorted_cols.shape
    idx = np.arange(rows)
    if theta % 2:
        left = np.full(rows, theta // 2 - 1)
        right = np.full(rows, theta // 2 + 1)
        taken = 1
    else:
        left = np.full(rows, theta // 2 - 1)
        right = np.full(rows, theta // 2)
        taken = 0
    for _ in range(beta - taken):
        gap_left = np.where(left >= 0, np.abs(sorted_cols[idx, np.maximum(left, 0)] - med), np.inf)
        gap_right = np.where(right < theta, np.abs(sorted_cols[idx, np.minimum(right, theta - 1)] - med), np.inf)
        go_left = gap_left <= gap_right
        left = np.where(go_left, left - 1, left)
        right = np.where(go_left, right, right + 1)
    return left + 1


@register_rule("bulyan", options={"f": (int, _non_negative)})
def aggregate_bulyan(batch: Batch, params) -> Aggregate:
    """bulyan: Krum picks theta = n-2f messages, then per coordinate the beta = theta-2f values nearest the median are averaged.

    El Mhamdi et al. 2018, which needs n >= 4f + 3: f is clamped to (n - 3) // 4.
    Per coordinate the theta values are sorted (exact), the median taken as in
    the median rule, distances |x - median| computed elementwise, and the beta
    nearest kept (at equal distance the smaller value); they are added in
    ascending order.
    """
    n = batch.n
    f = min(_option_f(params), max(0, (n - 3) // 4))
    selection = compute_bulyan_selection(batch, f)
    theta = len(selection)
    beta = max(1, theta - 2 * f)
    cols = np.sort(coordinate_columns(batch, rows=selection), axis=1)
    start = _nearest_window(cols, _middle(cols), beta)
    kept = np.take_along_axis(cols, start[:, None] + np.arange(beta)[None, :], axis=1)
    total = _sum_columns_in_order(kept, 0, beta)
    return Aggregate(selection, total / float(beta * params.batch_size))


#: centered-clipping's radius without clipping, in units of a holder's mean gradient:
#: the default of Karimireddy, He and Jaggi's reference code (``--clip-tau 10``).
CENTERED_CLIPPING_TAU = 10.0


@register_rule("centered-clipping",
               options={"tau": (float, _positive_float), "iterations": (int, _positive_upto_max),
                        "tail": (float, _positive_float)})
def aggregate_centered_clipping(batch: Batch, params) -> Aggregate:
    """centered-clipping: v <- v + (1/n) sum_k clip(x_k - v, tau), iterated from v = 0.

    Karimireddy et al. 2021. The rule is stateless here (a block is validated
    from its messages alone), so it starts from 0 rather than the previous
    momentum. tau defaults to the honest norm bound of :func:`norm_bound`, the
    scale a clipped, noised honest gradient lives at; without clipping (no such
    bound) to :data:`CENTERED_CLIPPING_TAU` (10, the authors' default) per example:
    ``10 * m`` on the reported sums of m example gradients. iterations default to 3.
    Norms ||x_k - v|| use the fixed pairwise tree of :func:`fixed_order_row_sums`;
    the clipped differences are added in canonical order.
    """
    opts = params.aggregator_options
    if "tau" in opts:
        tau = float(opts["tau"])
    elif params.clip_mode == "none":
        tau = CENTERED_CLIPPING_TAU * float(params.batch_size)
    else:
        tau = norm_bound(params, batch.round + 1, tail=float(opts.get("tail", 20.0)))
    iterations = int(opts.get("iterations", 3))
    n, d = batch.n, batch.dim
    x = coordinate_values(batch)
    v = np.zeros(d, dtype=np.float64)
    diff = np.empty_like(x)
    work = _tree_buffer(n, d)
    for _ in range(iterations):
        np.subtract(x, v, out=diff)
        with np.errstate(over="ignore", invalid="ignore"):
            np.multiply(diff, diff, out=work[:, :d])
            norms = np.sqrt(_tree_sum(work))  # the fixed pairwise tree of fixed_order_row_sums
            factor = np.where(norms > tau, tau / norms, 1.0)
        factor[~np.isfinite(factor)] = 0.0
        diff *= factor[:, None]
        acc = np.zeros(batch.dim, dtype=np.float64)
        for k in range(n):  # canonical order
            acc += diff[k]
        v = v + acc / float(n)
    return Aggregate(tuple(range(n)), v / float(params.batch_size))
