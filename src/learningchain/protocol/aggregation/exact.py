"""Exact building blocks of the rules (DESIGN.md section 3).

Rankings use exact integers (dot products of the fixed-point unit vectors as
integer-valued float64 whose partial sums stay below 2**53) and break ties by
message hash; float sums are elementwise, in an order the code fixes.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ..quantize import dequantize
from .core import Batch

__all__ = [
    "compute_sum_vector",
    "compute_gram",
    "compute_cosine_ranking",
    "compute_l_nearest",
    "weighted_unit_sum",
    "coordinate_values",
    "coordinate_columns",
    "fixed_order_row_sums",
    "compute_squared_distances",
    "compute_krum_scores",
]


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
    n2 = batch.sq_norms
    if batch.has_float_copy or batch.q.size <= _WHOLE_COPY_ENTRIES:
        # small enough (or converted already by a rule before this one): one float64 copy
        qf = batch.qf
        v = np.ones(batch.n) @ qf  # Eq. 14 as a BLAS matvec: integers, so exact
        return qf @ v, (n2 if n2 is not None else np.einsum("ij,ij->i", qf, qf))
    # no (n, d) float64 copy of the batch (8 n d bytes: 800 MB for 100 messages of a
    # million entries): the integer column sum, then a few rows converted at a time
    v = batch.q.sum(axis=0, dtype=np.int64).astype(np.float64)  # Eq. 14, exact
    a, squares = exact_row_dots(batch.q, v, squares=n2 is None)
    return a, (n2 if n2 is not None else squares)


#: batches of at most this many entries are converted to float64 whole (at most 16 MB,
#: where one copy and two BLAS calls are quicker than a loop); larger ones a few rows at a time
_WHOLE_COPY_ENTRIES = 1 << 21
#: bytes of the float64 rows :func:`exact_row_dots` converts at a time (cache-sized)
_ROW_CHUNK_BYTES = 1 << 20


def exact_row_dots(q: np.ndarray, v: np.ndarray, *, squares: bool = False):
    """``q @ v`` for an integer matrix ``q`` and an integer-valued float64 ``v`` whose
    products' partial sums stay integers below 2**53 (as the rules' bounds guarantee):
    exact in float64 BLAS whatever its order, over a few rows converted at a time.
    ``squares``: also each row's ``||q_k||^2`` (exact under the same bound), else None."""
    n, d = q.shape
    out = np.empty(n, dtype=np.float64)
    sq = np.empty(n, dtype=np.float64) if squares else None
    rows = max(1, min(n, _ROW_CHUNK_BYTES // (8 * max(1, d))))
    buf = np.empty((rows, d), dtype=np.float64)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        part = buf[: hi - lo]
        part[...] = q[lo:hi]  # exact: |q| < 2**31
        np.matmul(part, v, out=out[lo:hi])
        if squares:
            sq[lo:hi] = np.einsum("ij,ij->i", part, part)
    return out, sq


def compute_cosine_ranking(batch: Batch) -> list[int]:
    """Indices sorted by Eq. 15's cosine with the sum vector, nearest first.

    cos_k = (v_s . q_k) / (||v_s|| ||q_k||). ||v_s|| is common to all k, so the
    order is that of a_k / sqrt(n_k) with a_k = v_s . q_k and n_k = ||q_k||^2,
    compared exactly as the rational sign(a_k) a_k^2 / n_k. Ties go to the lower
    message hash.
    """
    if not batch.integer_valued:  # pre-aggregated float vectors (see .vectors)
        a, n2 = float_cosine_terms(batch)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            keys = np.where(n2 > 0, (a * np.abs(a)) / np.where(n2 > 0, n2, 1.0), 0.0)
        return np.lexsort((_hash_ranks(batch.keys), -keys)).tolist()
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
    costs one multiply (of the row widened exactly to float64, inside the ufunc)
    and one in-place add, with no float64 copy of the whole batch; the
    product is the same real number as ``s_i * (q_i / 2**bits)`` and so rounds
    to the same double. Where folding the scale would underflow (a norm below
    about 2**(bits-1022)) the two-step form is used instead.
    """
    # the float64 copy where a rule made one (quicker rows), else the integers (or a
    # VectorBatch's float64 directions), each row widened exactly inside the ufunc
    q = batch.qf if batch.has_float_copy else batch.q
    norms = batch.norms if norms is None else norms
    scale = batch.scale
    unscale = float(2**batch.bits)
    acc = np.zeros(batch.dim, dtype=np.float64)
    term = np.empty(batch.dim, dtype=np.float64)
    for j, i in enumerate(indices):
        coeff = float(norms[i]) if weights is None else float(norms[i]) * float(weights[j])
        folded = coeff * scale
        if folded * unscale == coeff:
            np.multiply(q[i], folded, out=term, dtype=np.float64)
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
    that overflows (absurd norms) is +inf, never NaN. A batch of pre-aggregated
    float vectors computes each distance by the fixed tree instead (see .vectors).
    """
    if not batch.integer_valued:
        return float_squared_distances(batch, norms)
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


# -- pre-aggregated float vectors (see .vectors): the same fixed tree, no library reduction --


def _tree_rows(products: np.ndarray) -> np.ndarray:
    return fixed_order_row_sums(products)


def tree_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row k: sum_i a[k, i] * b[k, i] (b may be one row), elementwise products
    added by the fixed pairwise tree."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _tree_rows(np.multiply(a, b))


def float_squared_distances(batch: Batch, norms=None) -> np.ndarray:
    """D[a, b] = sum_i (x_a,i - x_b,i)^2 by the fixed tree, x = the batch's vectors
    (with ``norms`` in place of its own); an overflow is +inf, never NaN."""
    x = coordinate_values(batch, norms=norms)
    n = batch.n
    d = np.zeros((n, n), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(n - 1):  # the upper triangle, mirrored: (x_b - x_a)^2 is (x_a - x_b)^2 bit for bit
            diff = x[a + 1:] - x[a]
            d[a, a + 1:] = _tree_rows(diff * diff)
    d += d.T
    d[np.isnan(d)] = np.inf
    return d


def float_cosine_terms(batch: Batch) -> tuple:
    """(a_k, n_k) = (v . u_k, ||u_k||^2) with v = sum_k u_k added in canonical
    order (ascending key, whatever the rows' order)."""
    u = batch.q
    v = np.zeros(batch.dim, dtype=np.float64)
    for k in sorted(range(batch.n), key=batch.keys.__getitem__):
        v += u[k]
    return tree_dots(u, v), tree_dots(u, u)
