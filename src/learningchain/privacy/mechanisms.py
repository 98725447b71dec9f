"""Noise mechanisms, each a small object with its settings in ``__init__`` and the
randomness passed in (a seeded ``numpy.random.Generator``, never global state).

* :class:`L2LaplaceMechanism` is the paper's Eq. 2/10: density proportional to
  ``exp(-beta * ||rho||_2)`` in R^d with ``beta = epsilon / C``; with L2
  sensitivity ``C = 2G`` (Appendix A) one release is epsilon-DP. Sampled exactly:
  in polar form the density of the radius is proportional to
  ``r^(d-1) exp(-beta r)``, i.e. ``r ~ Gamma(shape=d, scale=1/beta)``, and the
  direction is uniform on the sphere (a normalised standard normal vector).
* :class:`GaussianMechanism`: ``N(0, sigma^2 I)`` with ``sigma = z * C``
  (noise multiplier z), for (epsilon, delta)-DP via an accountant.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

__all__ = ["L2LaplaceMechanism", "GaussianMechanism", "NoNoise", "uniform_direction"]


def uniform_direction(d: int, rng: np.random.Generator) -> np.ndarray:
    while True:
        v = rng.standard_normal(d)
        n = float(np.sqrt(np.dot(v, v)))
        if n > 0:
            v /= n  # in place: the same quotients as v / n, without a second array
            return v


class L2LaplaceMechanism:
    name = "l2-laplace"

    def __init__(self, *, epsilon: float, sensitivity: float):
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ConfigError(f"epsilon must be finite and > 0, got {epsilon}")
        if not (sensitivity > 0 and math.isfinite(sensitivity)):
            raise ConfigError(f"sensitivity must be finite and > 0, got {sensitivity}")
        self.epsilon = float(epsilon)
        self.sensitivity = float(sensitivity)
        self.beta = self.epsilon / self.sensitivity

    def sample_radius(self, d: int, rng: np.random.Generator, size=None):
        return rng.gamma(shape=d, scale=1.0 / self.beta, size=size)

    def sample(self, d: int, rng: np.random.Generator) -> np.ndarray:
        radius = float(self.sample_radius(d, rng))
        u = uniform_direction(d, rng)
        u *= radius  # in place: the products radius * u_i, bit for bit
        return u

    def expected_norm(self, d: int) -> float:
        return d / self.beta


class GaussianMechanism:
    name = "gaussian"

    def __init__(self, *, sigma: float):
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"sigma must be finite and > 0, got {sigma}")
        self.sigma = float(sigma)

    def sample(self, d: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, self.sigma, size=d)

    def expected_norm(self, d: int) -> float:
        return self.sigma * math.sqrt(d)


class NoNoise:
    name = "none"

    def sample(self, d: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(d)

    def expected_norm(self, d: int) -> float:
        return 0.0
