"""Fixed-point unit vectors (DESIGN.md section 3).

A message carries its unit gradient as integers ``q = round(u * 2**bits)``. A
vector is a valid unit vector when ``||q||^2`` lies within a relative tolerance
``2**-tol_bits`` of ``2**(2*bits)`` in norm; the check is done on integers, so it
is exact. Because every accepted vector then has norm at most
``(1 + 2**-tol_bits) * 2**bits``, every dot product between accepted vectors, and
between one and the sum of ``n`` of them, is an integer whose partial sums are
bounded by ``n * (1 + 2**-tol_bits)**2 * 2**(2*bits)`` (Cauchy-Schwarz on the
absolute values). Keeping that bound below ``2**53`` lets consensus code compute
those dot products with float64 BLAS and still get the exact integer on every
machine, whatever the summation order.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InvalidMessage

__all__ = [
    "quantize_unit",
    "dequantize",
    "squared_norm",
    "unit_norm_bounds",
    "check_unit",
    "max_exact_messages",
    "MESSAGE_BITS",
    "unit_limit",
    "entry_max",
    "max_quant_bits",
]

#: the widths a message's gradient entries may have (a genesis parameter, ``message_bits``)
MESSAGE_BITS = (16, 32)

_FLOAT_EXACT = 2**53


def quantize_unit(u: np.ndarray, bits: int) -> np.ndarray:
    """int32 fixed-point image of a float unit vector (round half to even)."""
    q = np.rint(np.asarray(u, dtype=np.float64) * float(2**bits))
    return q.astype(np.int32)


def dequantize(q: np.ndarray, bits: int) -> np.ndarray:
    """``q / 2**bits`` as float64; exact (a power-of-two scaling of small integers)."""
    return q.astype(np.float64) * (1.0 / float(2**bits))


def squared_norm(q: np.ndarray, *, max_abs: int | None = None) -> int:
    """Exact ``sum(q_i**2)`` as a Python int, for any vector of 16- or 32-bit integers
    (any length below 2**31).

    One int64 dot product when it cannot wrap: every term is at most ``m**2`` for
    ``m = max |q_i|`` and the terms are non-negative, so every partial sum is at most
    ``len(q) * m**2``; below 2**63 the dot product is exact in any order. That holds for
    every vector within the unit bound at quant_bits <= 20 up to ``params.MAX_DIM``
    entries. Otherwise each entry is split as ``q_i = 2**16 h_i + l_i`` with
    ``-2**15 <= h_i < 2**15`` and ``0 <= l_i < 2**16``, and
    ``sum(q_i**2) = 2**32 sum(h_i**2) + 2**17 sum(h_i l_i) + sum(l_i**2)``: three int64
    dot products whose terms are at most 2**30, below 2**31 and below 2**32 in magnitude,
    so none can wrap below 2**31 entries. ``max_abs``, when the caller has it, is ``max |q_i|``
    (the scan is not done again; 16-bit entries need none)."""
    if q.size == 0:
        return 0
    if max_abs is not None:
        m = int(max_abs)
    elif q.dtype.itemsize <= 2:
        m = 1 << 15  # 16-bit entries: no scan needed
    else:
        m = max(int(q.max()), -int(q.min()))
    q64 = q.astype(np.int64)
    if q.size * m * m < 2**63:
        return int(np.dot(q64, q64))  # integer dot product: exact in any order
    h = q64 >> 16  # arithmetic shift: floor(q_i / 2**16)
    low = q64 & 0xFFFF
    return (int(np.dot(h, h)) << 32) + (int(np.dot(h, low)) << 17) + int(np.dot(low, low))


def unit_norm_bounds(bits: int, tol_bits: int) -> tuple[int, int]:
    """Inclusive integer bounds on ``||q||^2`` for a valid unit vector."""
    one = 2**tol_bits
    shift = 2 * bits - 2 * tol_bits
    if shift < 0:
        raise ConfigError(f"tolerance 2^-{tol_bits} is finer than the scale 2^{bits} can express")
    return (one - 1) ** 2 << shift, (one + 1) ** 2 << shift


def unit_limit(bits: int, tol_bits: int) -> int:
    """The largest |q_i| a valid unit vector may have: 2**bits (1 + 2**-tol_bits), floored."""
    return (2**bits) * (2**tol_bits + 1) // (2**tol_bits)


def entry_max(width: int) -> int:
    """The largest entry a signed integer of ``width`` bits holds."""
    return 2 ** (width - 1) - 1


def max_quant_bits(width: int) -> int:
    """The largest scale (quant_bits, at most 26) whose unit bound fits ``width``-bit entries
    for every tolerance (norm_tol_bits >= 4)."""
    return min(26, width - 2)


def check_unit(q: np.ndarray, bits: int, tol_bits: int, *, sq_norm: int | None = None) -> int:
    """Raise InvalidMessage unless ``q`` is a unit vector within tolerance; return ||q||^2.

    ``sq_norm``, when the caller has it, is ``squared_norm(q)`` (not computed again).
    The components are bounded first: one beyond the largest a unit vector within
    tolerance can have is refused before any sum is formed, and the sum itself is exact
    for every integer input (``squared_norm``)."""
    lo, hi = unit_norm_bounds(bits, tol_bits)
    limit = unit_limit(bits, tol_bits)
    m = max(int(q.max()), -int(q.min())) if q.size else 0  # Python ints: -(-2**31) cannot wrap
    if m > limit:
        raise InvalidMessage("not-unit", f"a component exceeds the unit bound 2^{bits}")
    n2 = squared_norm(q, max_abs=m) if sq_norm is None else int(sq_norm)
    if not lo <= n2 <= hi:
        rel = (n2 ** 0.5) / 2**bits
        raise InvalidMessage(
            "not-unit",
            f"quantised vector has norm {rel:.6g}, outside 1 +/- 2^-{tol_bits}",
        )
    return n2


def max_exact_messages(bits: int, tol_bits: int) -> int:
    """Largest n for which ``n * max||q||^2 < 2**53`` (all consensus dot products exact)."""
    _, hi = unit_norm_bounds(bits, tol_bits)
    return (_FLOAT_EXACT - 1) // hi
