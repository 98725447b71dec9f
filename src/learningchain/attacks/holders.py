"""Byzantine data holders (paper Section III-B and VI-B).

A Byzantine holder may send anything it can sign. Its attack returns the raw
gradient vectors it wants to send this round (one message each, the first
under its own pseudo-identity, any further ones under fresh identities); the
holder then normalises, quantises and signs them like an honest one, because a
message that breaks the format would simply be refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import ConfigError

__all__ = ["AttackContext", "HolderAttack", "HOLDER_ATTACKS", "register_attack", "make_holder_attack",
           "GaussianAttack"]


@dataclass
class AttackContext:
    round: int  # t, the height of the block the gradients are computed at
    dim: int
    rng: np.random.Generator
    own_gradient: Callable[[], np.ndarray]  # the attacker's honest (clipped, noised) gradient, on demand
    honest: Optional[list] = None  # honest holders' vectors this round (omniscient attacks only)
    byzantine_count: int = 1
    holders: int = 1
    holder: object = None  # the attacker's DataHolder (its data, model, keys)
    base: object = None  # the block the round builds on
    extra: dict = field(default_factory=dict)


class HolderAttack:
    name = "base"
    #: True when the attack needs this round's honest vectors (ALIE, IPM, ...).
    omniscient = False

    def __call__(self, ctx: AttackContext) -> list:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


HOLDER_ATTACKS: dict[str, type] = {}


def register_attack(name: str):
    def deco(cls):
        if name in HOLDER_ATTACKS:
            raise ValueError(f"holder attack {name!r} registered twice")
        cls.name = name
        HOLDER_ATTACKS[name] = cls
        return cls

    return deco


def make_holder_attack(name: str, **options) -> HolderAttack:
    try:
        cls = HOLDER_ATTACKS[name]
    except KeyError:
        raise ConfigError(f"unknown attack {name!r}; known: {', '.join(sorted(HOLDER_ATTACKS))}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for attack {name!r}: {exc}") from None


@register_attack("gaussian")
class GaussianAttack(HolderAttack):
    """The paper's Byzantine holder: N(0, sigma^2 I) instead of its gradient (sigma = 200)."""

    def __init__(self, sigma: float = 200.0):
        if not sigma > 0:
            raise ConfigError(f"gaussian attack needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, ctx: AttackContext) -> list:
        return [ctx.rng.normal(0.0, self.sigma, size=ctx.dim)]
