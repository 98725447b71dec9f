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


def squared_norm(q: np.ndarray) -> int:
    """Exact ``sum(q_i**2)`` as a Python int (int64 arithmetic cannot overflow for
    accepted vectors: each term is below 2**62 and the sum is about 2**(2*bits))."""
    q64 = q.astype(np.int64)
    return int(np.dot(q64, q64))  # integer dot product: exact in any order


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

    ``sq_norm``, when the caller has it, is ``squared_norm(q)`` (not computed again)."""
    lo, hi = unit_norm_bounds(bits, tol_bits)
    limit = unit_limit(bits, tol_bits)
    if q.size and max(int(q.max()), -int(q.min())) > limit:  # Python ints: -(-2**31) cannot wrap
        raise InvalidMessage("not-unit", f"a component exceeds the unit bound 2^{bits}")
    n2 = squared_norm(q) if sq_norm is None else int(sq_norm)
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
