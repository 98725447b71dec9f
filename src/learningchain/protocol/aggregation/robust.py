"""The geometric median and minimum-diameter averaging, exact consensus rules."""

from __future__ import annotations

import math

import numpy as np

from .core import Aggregate, Batch, register_rule
from .exact import _hash_ranks, _middle, _tree_buffer, _tree_sum, compute_squared_distances, coordinate_columns, \
    coordinate_values, weighted_unit_sum
from .rules import _non_negative, _option_f, _positive_float, _positive_upto_max, default_f

__all__ = ["aggregate_geometric_median", "aggregate_mda", "mda_subsets", "MDA_MAX_SUBSETS",
           "GEOMETRIC_MEDIAN_ITERATIONS", "GEOMETRIC_MEDIAN_NU"]

#: Weiszfeld iterations and smoothing by default (nu as in Pillutla et al.'s RFA).
GEOMETRIC_MEDIAN_ITERATIONS = 8
GEOMETRIC_MEDIAN_NU = 1e-6


@register_rule("geometric-median",
               options={"iterations": (int, _positive_upto_max), "nu": (float, _positive_float)})
def aggregate_geometric_median(batch: Batch, params) -> Aggregate:
    """geometric-median: a fixed number of smoothed Weiszfeld steps from the coordinate-wise median.

    z_0 is the coordinate-wise median of the x_k (the median rule's exact
    sort; the two middle values of an even count averaged as a*0.5 + b*0.5).
    Each step computes r_k = sqrt(sum_i (x_k,i - z_i)^2) by the fixed pairwise
    tree, w_k = 1 / max(nu, r_k), and z <- (sum_k w_k x_k) / (sum_k w_k), both
    sums added in canonical order (rows in message-hash order; one rounding per
    product and addition). Options: ``iterations`` (8), ``nu`` (1e-6). Every
    message has a weight, so the selection is all of them.
    """
    opts = params.aggregator_options
    iterations = int(opts.get("iterations", GEOMETRIC_MEDIAN_ITERATIONS))
    nu = float(opts.get("nu", GEOMETRIC_MEDIAN_NU))
    n, d = batch.n, batch.dim
    x = coordinate_values(batch)
    z = _middle(np.sort(coordinate_columns(batch), axis=1))
    order = sorted(range(n), key=batch.keys.__getitem__)
    work = _tree_buffer(n, d)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(iterations):
            diff = x - z
            np.multiply(diff, diff, out=work[:, :d])
            r = np.sqrt(_tree_sum(work))
            w = 1.0 / np.maximum(r, nu)
            w[~np.isfinite(w)] = 0.0
            acc = np.zeros(d, dtype=np.float64)
            total = 0.0
            for k in order:
                acc += x[k] * w[k]
                total += float(w[k])
            if not total > 0.0 or not math.isfinite(total):
                break
            z = acc / total
    return Aggregate(tuple(range(n)), z / float(params.batch_size))


#: Candidate subsets MDA may examine in one block by default (a few seconds of work at most).
MDA_MAX_SUBSETS = 200_000


def _mda_f(params, n: int) -> int:
    """f from the options (default ceil(K/2) - 1), clamped to (n - 1) // 2: MDA needs n > 2f."""
    return max(0, min(_option_f(params), (n - 1) // 2))


def mda_subsets(n: int, f: int) -> int:
    """The candidate subsets of an n-message block: C(n, min(f, (n-1)//2))."""
    return math.comb(n, max(0, min(f, (n - 1) // 2)))


def _mda_limit(options: dict) -> int:
    return int(options.get("max_subsets", MDA_MAX_SUBSETS))


def _mda_message_cap(options: dict, holders: int):
    """The largest n whose search stays within max_subsets (C(n, f) grows with n)."""
    f = int(options.get("f", default_f(holders)))
    limit = _mda_limit(options)
    n = 1
    while mda_subsets(n + 1, f) <= limit and n < 1 << 16:
        n += 1
    return n


def _mda_check(params):
    f = int(params.aggregator_options.get("f", default_f(params.holders)))
    n = params.max_messages
    count, limit = mda_subsets(n, f), _mda_limit(params.aggregator_options)
    if count > limit:
        return (f"a block of up to max_messages = {n} messages with f = {f} has C({n}, {min(f, (n - 1) // 2)}) = "
                f"{count:.3g} candidate subsets, above max_subsets = {limit}; lower f (aggregator_options={{f=...}}), "
                f"the holders or max_messages (at most {_mda_message_cap(params.aggregator_options, params.holders)} "
                f"for this f), or raise max_subsets")
    return None


def _mda_selection(dist: np.ndarray, keys: tuple, f: int) -> tuple:
    """The n - f messages of least diameter, ties to the lexicographically least
    list of hash ranks.

    A depth-first search over the kept sets in that lexicographic order (hash
    rank by hash rank); a set replaces the best one only with a strictly smaller
    diameter, and a branch is cut as soon as its partial diameter reaches the
    best one (no set in it could then replace the best). So the result is the
    exhaustive search's, and the leaves visited are at most C(n, f).
    """
    n = dist.shape[0]
    ranks = _hash_ranks(keys)
    by_hash = sorted(range(n), key=lambda i: int(ranks[i]))
    rows = [[float(v) for v in dist[i]] for i in range(n)]
    size = n - f
    best = {"kept": None, "diam": math.inf}
    kept: list = []

    def search(start: int, diam: float) -> None:
        if len(kept) == size:
            best["kept"], best["diam"] = tuple(kept), diam
            return
        for pos in range(start, n - (size - len(kept)) + 1):
            c = by_hash[pos]
            row = rows[c]
            d = max([diam] + [row[j] for j in kept])
            if best["kept"] is not None and not d < best["diam"]:
                continue
            kept.append(c)
            search(pos + 1, d)
            kept.pop()

    search(0, 0.0)
    return tuple(sorted(best["kept"]))


@register_rule("mda", options={"f": (int, _non_negative), "max_subsets": (int, _positive_upto_max)},
               check=_mda_check, message_cap=_mda_message_cap)
def aggregate_mda(batch: Batch, params) -> Aggregate:
    """mda: the mean of the n - f messages of least diameter (El Mhamdi et al. 2018).

    The diameter of a set is its largest squared distance (the exact-Gram
    distances of compute_squared_distances; squaring keeps the order). The
    search (:func:`_mda_selection`) may visit C(n, f) subsets: genesis refuses
    params whose largest block (max_messages) would need more than
    ``max_subsets`` (200,000). f defaults to ceil(K/2) - 1, clamped to
    (n - 1) // 2. Ties go to the subset whose message hashes, in ascending
    order, come first lexicographically. The subset is the selection; its
    vectors are added in canonical order and divided by n - f.
    """
    f = _mda_f(params, batch.n)
    selection = _mda_selection(compute_squared_distances(batch), batch.keys, f)
    total = weighted_unit_sum(batch, selection)
    return Aggregate(selection, total / float(len(selection) * params.batch_size))
