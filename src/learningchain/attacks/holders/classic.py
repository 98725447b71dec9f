"""The classic Byzantine holder attacks: the paper's Gaussian attacker, sign
flipping, the paper's "optimal" opposite attack, ALIE, IPM, label flipping,
norm inflation and Sybil identities."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional

import numpy as np

from ...errors import ConfigError
from ...models import set_flat
from ...privacy.clipping import clipped_gradient_sum
from .base import AttackContext, HolderAttack, check_positive, honest_matrix, make_holder_attack, register_attack

__all__ = ["GaussianAttack", "SignFlipAttack", "OppositeAttack", "ALIEAttack", "IPMAttack", "LabelFlipAttack",
           "NormInflationAttack", "SybilAttack", "alie_z", "flipped_labels"]


@register_attack("gaussian")
class GaussianAttack(HolderAttack):
    """The paper's Byzantine holder: N(0, sigma^2 I) instead of its gradient (sigma = 200)."""

    def __init__(self, sigma: float = 200.0):
        if not sigma > 0:
            raise ConfigError(f"gaussian attack needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, ctx: AttackContext) -> list:
        return [ctx.rng.normal(0.0, self.sigma, size=ctx.dim)]


@register_attack("sign-flip")
class SignFlipAttack(HolderAttack):
    """Its own (clipped, noised) gradient, negated and scaled: -scale * g_k."""

    def __init__(self, scale: float = 1.0):
        self.scale = check_positive("sign-flip", "scale", scale)

    def __call__(self, ctx: AttackContext) -> list:
        return [-self.scale * ctx.own_gradient()]


@register_attack("opposite")
class OppositeAttack(HolderAttack):
    """The paper's "optimal" attack (Section V-B): the Byzantine holders together
    send the opposite of the honest sum with a larger norm,
    sum_b g_b = -scale * sum_h g_h with scale > 1, shared equally."""

    omniscient = True

    def __init__(self, scale: float = 2.0):
        self.scale = check_positive("opposite", "scale", scale)

    def __call__(self, ctx: AttackContext) -> list:
        honest_sum = honest_matrix(ctx, "opposite").sum(axis=0)
        return [-self.scale * honest_sum / max(1, ctx.byzantine_count)]


def alie_z(n: int, f: int) -> float:
    """z_max of Baruch et al. 2019 ("A Little Is Enough", Sec. 3): with
    s = floor(n/2 + 1) - f holders to win over, the largest z with
    Phi(z) < (n - s) / n."""
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n
    p = min(max(p, 1e-12), 1 - 1e-12)
    return NormalDist().inv_cdf(p)


@register_attack("alie")
class ALIEAttack(HolderAttack):
    """A Little Is Enough (Baruch et al. 2019): every Byzantine holder sends
    mu - z * sigma, the coordinate-wise mean and standard deviation of the honest
    gradients, with z = z_max(n, f) unless given."""

    omniscient = True

    def __init__(self, z: Optional[float] = None):
        if z is not None and (isinstance(z, bool) or not isinstance(z, (int, float)) or not np.isfinite(z)):
            raise ConfigError(f"alie attack needs a finite z, got {z!r}")
        self.z = None if z is None else float(z)

    def __call__(self, ctx: AttackContext) -> list:
        honest = honest_matrix(ctx, "alie")
        z = self.z if self.z is not None else alie_z(ctx.holders, ctx.byzantine_count)
        mu = honest.mean(axis=0)
        sigma = honest.std(axis=0, ddof=1) if len(honest) > 1 else np.zeros_like(mu)
        return [mu - z * sigma]


@register_attack("ipm")
class IPMAttack(HolderAttack):
    """Inner product manipulation (Xie et al. 2019, "Fall of Empires"): every
    Byzantine holder sends -epsilon times the mean honest gradient."""

    omniscient = True

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = check_positive("ipm", "epsilon", epsilon)

    def __call__(self, ctx: AttackContext) -> list:
        return [-self.epsilon * honest_matrix(ctx, "ipm").mean(axis=0)]


def flipped_labels(y, classes: int):
    """Label flipping: class c becomes classes - 1 - c (1 - y for binary tasks)."""
    return (classes - 1) - y


@register_attack("label-flip")
class LabelFlipAttack(HolderAttack):
    """Its gradient computed honestly (clipped, noised) but on its own data with
    every label c replaced by classes - 1 - c: poisoned data, honest procedure."""

    def __call__(self, ctx: AttackContext) -> list:
        holder = ctx.holder
        if holder is None:
            raise ConfigError("the label-flip attack needs the attacker's own data")
        params = holder.params
        set_flat(holder.model, ctx.base.model)
        x, y = holder.batch()
        grad, _ = clipped_gradient_sum(holder.model, holder.loss, x, flipped_labels(y, int(params.model["classes"])),
                                       clip=params.clip, mode=params.clip_mode)
        return [holder.privatize(grad, ctx.base)]


@register_attack("norm-inflation")
class NormInflationAttack(HolderAttack):
    """An honest-looking direction with a huge norm: Eq. 15 ranks directions
    only, Eq. 16 trusts the reported norm.

    The direction is the attacker's own gradient g tilted by ``tilt`` degrees
    towards a fixed direction r (the same for every attacker: drawn from
    ``seed``, made orthogonal to g); the norm is ``factor * ||g||``. With
    ``tilt=0`` it is the pure form, a gradient with a huge step: for a linear
    classifier, whose error depends only on the direction of w, that mostly
    freezes the model at whatever the attackers' first noisy gradients point
    to. A moderate tilt keeps the cosine with the honest sum above that of
    noisy honest gradients (so l-nearest still selects it) while steering the
    model off course.
    """

    def __init__(self, factor: float = 1000.0, tilt: float = 45.0, seed: int = 0):
        self.factor = check_positive("norm-inflation", "factor", factor)
        if isinstance(tilt, bool) or not isinstance(tilt, (int, float)) or not 0 <= tilt < 90:
            raise ConfigError(f"norm-inflation attack needs 0 <= tilt < 90 (degrees), got {tilt!r}")
        self.tilt = math.radians(float(tilt))
        self.seed = int(seed)

    def __call__(self, ctx: AttackContext) -> list:
        g = np.asarray(ctx.own_gradient(), dtype=np.float64)
        norm = float(np.sqrt(np.dot(g, g)))
        if not norm > 0:
            return [g]
        unit = g / norm
        r = np.random.default_rng([self.seed, ctx.dim]).standard_normal(ctx.dim)
        r -= np.dot(r, unit) * unit
        rn = float(np.sqrt(np.dot(r, r)))
        direction = unit if rn == 0 else math.cos(self.tilt) * unit + math.sin(self.tilt) * (r / rn)
        return [self.factor * norm * direction]


@register_attack("sybil")
class SybilAttack(HolderAttack):
    """One attacker, many pseudo-identities: ``identities`` messages per round
    (its own identity and fresh ones), each carrying what the ``inner`` attack
    sends (default: its gradient sign-flipped). Pseudo-identities cost nothing,
    so the honest-majority assumption is about messages, not people."""

    def __init__(self, identities: int = 10, inner: str = "sign-flip", inner_options: Optional[dict] = None):
        if isinstance(identities, bool) or not isinstance(identities, int) or identities < 1:
            raise ConfigError(f"sybil attack needs identities >= 1, got {identities!r}")
        if inner == "sybil":
            raise ConfigError("the sybil attack cannot nest itself")
        self.identities = identities
        self.inner = make_holder_attack(inner, **(inner_options or {}))
        self.omniscient = self.inner.omniscient
        self.needs_images = self.inner.needs_images

    def __call__(self, ctx: AttackContext) -> list:
        out = []
        for _ in range(self.identities):
            out.extend(self.inner(ctx))
        return out[: self.identities]

    def describe(self) -> str:
        return f"sybil({self.identities} x {self.inner.describe()})"
