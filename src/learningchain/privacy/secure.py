"""Noise no other party can know: a generator over the operating system's CSPRNG.

A numpy ``Generator`` is a PCG64 stream: seeded from ``--seed`` (in-process
simulations, reproducible) or from 128 bits of ``secrets`` (node processes
without ``secure_rng``) its output is unpredictable to anyone without the seed,
but PCG64 is not a cryptographically secure generator: its state can be
recovered from enough of its output. :class:`SecureRandom` draws every bit from
``os.urandom`` instead, for the pieces a holder's privacy rests on:

* uniforms: 53 random bits per double;
* normals (Gaussian noise, the l2-Laplace direction): Box-Muller on pairs of
  uniforms in (0, 1] (exact in law up to the 53-bit resolution of the uniforms,
  which caps |z| at about 8.6);
* Gamma(shape, scale) (the l2-Laplace radius, shape = d): for an integer shape
  up to ``EXACT_GAMMA_SHAPE`` the sum of ``shape`` exponentials ``-log U``
  (exact in law), otherwise the inverse CDF ``scale * gammaincinv(shape, U)``;
* batches: ``random`` for Poisson sampling, ``choice`` without replacement by
  sorting random keys; ``bytes`` (fresh identities' keys).

Anything else a caller asks of it (an attack's own randomness, say) is served
by a numpy Generator seeded from the OS, as node processes did before.
"""

from __future__ import annotations

import math
import os
import secrets

import numpy as np
from scipy.special import gammaincinv

__all__ = ["SecureRandom", "EXACT_GAMMA_SHAPE", "GENERATOR_SEEDED", "GENERATOR_OS_SEEDED", "GENERATOR_SECURE", "generator_of"]

#: integer Gamma shapes drawn as a sum of exponentials (larger: inverse CDF)
EXACT_GAMMA_SHAPE = 4096

GENERATOR_SEEDED = "numpy PCG64 seeded from --seed (reproducible in-process simulation; not secret)"
GENERATOR_OS_SEEDED = ("numpy PCG64 seeded with 128 bits from the OS (unpredictable to others without the "
                       "seed, but not a CSPRNG)")
GENERATOR_SECURE = "os.urandom (the OS CSPRNG): Box-Muller normals, Gamma radius from exponentials or inverse CDF"


def _count(size) -> int:
    if size is None:
        return 1
    return int(np.prod(size, dtype=np.int64)) if not isinstance(size, (int, np.integer)) else int(size)


def _shape(values: np.ndarray, size):
    if size is None:
        return float(values[0])
    return values.reshape(size)


class SecureRandom:
    """The subset of ``numpy.random.Generator`` a holder uses, from ``os.urandom``."""

    name = "os.urandom"
    description = GENERATOR_SECURE

    def __init__(self):
        self._other = None

    # -- raw bits -------------------------------------------------------------------
    def bytes(self, length: int) -> bytes:
        return os.urandom(int(length))

    def _bits53(self, n: int) -> np.ndarray:
        raw = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
        return raw.astype(np.float64)

    def _uniform_open(self, n: int) -> np.ndarray:
        """n uniforms in (0, 1] (safe for log)."""
        return (self._bits53(n) + 1.0) * 2.0 ** -53

    # -- numpy.random.Generator subset -----------------------------------------------
    def random(self, size=None):
        return _shape(self._bits53(_count(size)) * 2.0 ** -53, size)

    def standard_normal(self, size=None):
        n = _count(size)
        pairs = (n + 1) // 2
        u1, u2 = self._uniform_open(pairs), self._uniform_open(pairs)
        r = np.sqrt(-2.0 * np.log(u1))
        theta = 2.0 * math.pi * u2
        z = np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:n]
        return _shape(z, size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        z = self.standard_normal(size)
        return loc + scale * z

    def gamma(self, shape, scale=1.0, size=None):
        shape, scale = float(shape), float(scale)
        if not (shape > 0 and scale > 0):
            raise ValueError(f"gamma needs shape > 0 and scale > 0, got {shape} and {scale}")
        n = _count(size)
        if shape == int(shape) and shape <= EXACT_GAMMA_SHAPE:
            k = int(shape)
            out = np.empty(n)
            chunk = max(1, (1 << 20) // k)
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                out[lo:hi] = -np.log(self._uniform_open((hi - lo) * k)).reshape(hi - lo, k).sum(axis=1)
        else:
            u = self._bits53(n) * 2.0 ** -53
            u = np.clip(u, 2.0 ** -54, 1.0 - 2.0 ** -53)
            out = gammaincinv(shape, u)
        return _shape(out * scale, size)

    def choice(self, a, size=None, replace=True, p=None):
        if isinstance(a, (int, np.integer)) and not replace and p is None and size is not None:
            n, m = int(a), _count(size)
            if m > n:
                raise ValueError(f"cannot take {m} of {n} without replacement")
            order = np.argsort(self._bits53(n), kind="stable")  # a uniformly random permutation (ties: 2^-53)
            return order[:m].astype(np.int64).reshape(size)
        return self._fallback().choice(a, size=size, replace=replace, p=p)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        if high is None:
            low, high = 0, low
        hi = int(high) + (1 if endpoint else 0)
        span = hi - int(low)
        if span <= 0:
            raise ValueError(f"low >= high: {low}, {high}")
        values = np.asarray([int(low) + secrets.randbelow(span) for _ in range(_count(size))], dtype=dtype)
        return values[0] if size is None else values.reshape(size)

    def _fallback(self) -> np.random.Generator:
        if self._other is None:
            self._other = np.random.default_rng(secrets.randbits(128))
        return self._other

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._fallback(), name)


def generator_of(secure_rng, *, in_process: bool) -> str:
    """What the holders' noise, batches and fresh keys are drawn from (``privacy.generator``):
    the OS CSPRNG with ``secure_rng`` (None: the default, on in node processes, off in
    in-process runs), else a numpy PCG64, seeded by the run's seed in process or from the OS."""
    if secure_rng is True or (secure_rng is None and not in_process):
        return GENERATOR_SECURE
    return GENERATOR_SEEDED if in_process else GENERATOR_OS_SEEDED
