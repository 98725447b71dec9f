"""What every Byzantine holder attack shares: the context it is called with,
its base class and the registry of attacks by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ...errors import ConfigError

__all__ = ["AttackContext", "HolderAttack", "HOLDER_ATTACKS", "register_attack", "make_holder_attack",
           "honest_matrix", "check_positive"]


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
    #: True when the attack only makes sense on image data sets (the backdoor's trigger).
    needs_images = False

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


def honest_matrix(ctx: AttackContext, name: str) -> np.ndarray:
    if not ctx.honest:
        raise ConfigError(f"the {name} attack needs at least one honest holder's gradient this round")
    return np.stack([np.asarray(v, dtype=np.float64) for v in ctx.honest])


def check_positive(name: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or not value > 0:
        raise ConfigError(f"{name} attack needs {key} > 0, got {value!r}")
    return float(value)
