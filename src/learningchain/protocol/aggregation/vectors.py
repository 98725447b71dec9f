"""Batches of float vectors: what a pre-aggregation hands to the rule after it.

A pre-aggregated vector (a mean of messages, a clipped mean) is no longer a
fixed-point unit vector, so integer Gram matrices no longer apply. It is
carried like a message, as a direction and a norm: ``x_k = r_k * u_k`` with
``r_k = sqrt(sum_i x_ki^2)`` and ``u_k = x_k / r_k``, both float64, computed
elementwise and with the fixed pairwise tree of :func:`.exact.fixed_order_row_sums`.
:class:`VectorBatch` is a :class:`.core.Batch` whose ``q`` holds the u's
(float64) at scale 2**0, so every rule runs on it unchanged: its fixed-order
sums multiply each row by r_k (one rounding) and add rows in canonical order.

What changes is where a rule would use exact integers:

* the Gram matrix ``G[a, b] = u_a . u_b`` and the squared distances
  ``||x_a - x_b||^2`` are sums over coordinates of elementwise products, each
  added by the same pairwise tree (so the same bits on every machine, and D is
  exactly symmetric: (x_a - x_b)^2 and (x_b - x_a)^2 are the same doubles);
* l-nearest's sum vector is the rows' sum in canonical order, its dot products
  use the tree, and messages are ranked by the computed doubles
  ``(a_k |a_k|) / n_k`` (ties to the lower key): an exact sort of values every
  validator computes alike, though no longer of the exact rationals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from .core import Batch
from .exact import float_cosine_terms, float_squared_distances, tree_dots  # noqa: F401 - re-exported

__all__ = ["VectorBatch", "vector_batch", "tree_dots", "float_squared_distances", "float_cosine_terms"]


@dataclass(frozen=True)
class VectorBatch(Batch):
    """Float vectors x_k = norms[k] * q[k] (q: float64 directions, bits = 0)."""

    integer_valued: ClassVar[bool] = False

    @cached_property
    def qf(self) -> np.ndarray:
        return self.q

    @cached_property
    def gram(self) -> np.ndarray:
        """G[a, b] = u_a . u_b by the fixed tree, one row at a time (exactly symmetric)."""
        u = self.q
        return np.stack([tree_dots(u, u[a]) for a in range(self.n)]) if self.n else np.zeros((0, 0))


def vector_batch(x: np.ndarray, keys: tuple, round_: int = 0) -> VectorBatch:
    """The VectorBatch of float rows ``x``: r_k by the tree, u_k = x_k / r_k (0 when r_k = 0)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.sqrt(tree_dots(x, x))
        safe = np.where(r > 0, r, 1.0)
        u = x / safe[:, None]
    u[~(r > 0)] = 0.0
    r = np.where(r > 0, r, 0.0)
    return VectorBatch(np.ascontiguousarray(u), r, tuple(keys), 0, round_)
