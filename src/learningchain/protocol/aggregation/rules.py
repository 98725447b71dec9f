"""The registered aggregation rules (paper Eq. 14-16 and the Byzantine-robust
rules compared against), each a pure function of a batch and the chain's params.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError
from ...privacy.schedules import epsilon_for_round
from .core import Aggregate, Batch, default_f, register_rule
from .exact import (
    _krum_neighbours,
    _middle,
    _rank,
    _sum_columns_in_order,
    _sum_smallest,
    _tree_buffer,
    _tree_sum,
    compute_krum_scores,
    compute_l_nearest,
    compute_squared_distances,
    coordinate_columns,
    coordinate_values,
    weighted_unit_sum,
)


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
