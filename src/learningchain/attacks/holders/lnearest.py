"""An attack written against l-nearest itself (Eq. 14-16).

l-nearest sums the unit vectors of all messages (v_s, Eq. 14), keeps the l
whose unit vectors have the largest cosine to v_s (Eq. 15) and averages those
l with the norms their senders report (Eq. 16). Two weaknesses follow:

* colluders who send the same unit vector u add c u to v_s, so their own
  cosine to v_s gains c / ||v_s|| whatever u is, while an honest unit vector,
  mostly privacy noise, gains little from the others: u can turn away from the
  honest direction, even past 90 degrees, and still be selected;
* the norm is trusted, so once selected, a message moves the model by as much
  as its sender likes, along u.

A norm is positive, so the harm comes through the direction: the attackers
turn u as far from the honest direction as the selection margin allows, and
the inflated norm multiplies whatever component u has against it.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...errors import ConfigError
from .base import AttackContext, HolderAttack, check_positive, honest_matrix, register_attack

__all__ = ["LNearestMarginAttack", "margin_direction"]


def _unit(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 0 else x


def _units(honest: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(honest, axis=1, keepdims=True)
    return honest / np.where(norms > 0, norms, 1.0)


def margin_direction(honest: np.ndarray, c: int, l: int, r: np.ndarray, margin: float,
                     steps: int) -> tuple[float, np.ndarray]:
    """(phi, u): the largest angle phi on a grid of ``steps`` + 1 angles in
    [0, pi] such that the unit vector u = cos(phi) h + sin(phi) r (h the
    direction of the honest unit vectors' sum, r a unit vector orthogonal to
    it), sent by ``c`` colluders, has a cosine to the sum of all unit vectors
    at least ``margin`` above that of every honest message that could push the
    colluders out of the l nearest (the (l - c + 1)-th largest honest cosine)."""
    units = _units(honest)
    hsum = units.sum(axis=0)
    h = _unit(hsum)
    k = max(l - c, 0)
    best = (0.0, h)
    for i in range(steps + 1):
        phi = math.pi * i / steps
        u = math.cos(phi) * h + math.sin(phi) * r
        v = hsum + c * u
        norm_v = float(np.linalg.norm(v))
        if not norm_v > 0:
            continue
        mine = float(u @ v) / norm_v
        others = np.sort(units @ v / norm_v)[::-1]
        if k >= len(others) or mine >= others[k] + margin:
            best = (phi, u)
    return best


@register_attack("l-nearest-margin")
class LNearestMarginAttack(HolderAttack):
    """Against l-nearest: every attacker sends the same unit vector, turned
    from the honest direction as far as the selection allows
    (:func:`margin_direction`: towards a direction r shared by all attackers,
    drawn from ``seed`` and made orthogonal to the honest direction, up to
    180 degrees in ``steps`` steps, keeping a cosine ``margin`` of 0.01 over
    the honest message that could displace them), with norm ``factor`` (1000)
    times the largest honest norm.

    It knows every honest vector of the round, the number of attackers and
    the chain's l (the genesis parameters, or ``l`` if given; ceil(n/2) for n
    messages without them). Against ``l-nearest`` the norm is unbounded, so a
    selected message sets the step at will; against ``l-nearest-bounded`` the
    norm is capped at B(t) and only the turned direction, weighted by B(t),
    remains (docs/BYZANTINE.md has the numbers)."""

    omniscient = True

    def __init__(self, factor: float = 1000.0, margin: float = 0.01, steps: int = 180, seed: int = 0,
                 l: Optional[int] = None):
        self.factor = check_positive(self.name, "factor", factor)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 2:
            raise ConfigError(f"l-nearest-margin attack needs 0 <= margin < 2, got {margin!r}")
        self.margin = float(margin)
        for key, value in (("steps", steps), ("l", l)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"l-nearest-margin attack needs {key} >= 1, got {value!r}")
        self.steps, self.seed, self.l = steps, int(seed), l

    def chain_l(self, ctx: AttackContext, n: int) -> int:
        if self.l is not None:
            return self.l
        params = getattr(ctx.holder, "params", None)
        return int(getattr(params, "l", None) or math.ceil(n / 2))

    def __call__(self, ctx: AttackContext) -> list:
        honest = honest_matrix(ctx, self.name)
        c = max(1, ctx.byzantine_count)
        h = _unit(_units(honest).sum(axis=0))
        r = np.random.default_rng([self.seed, ctx.dim]).standard_normal(ctx.dim)
        r = _unit(r - float(r @ h) * h)
        _, u = margin_direction(honest, c, self.chain_l(ctx, len(honest) + c), r, self.margin, self.steps)
        return [self.factor * float(np.linalg.norm(honest, axis=1).max()) * u]
