"""A backdoor by model replacement (Bagdasaryan, Veit, Hua, Estrin and
Shmatikov, "How To Backdoor Federated Learning", AISTATS 2020), with a pixel
trigger for image data sets."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ...errors import ConfigError
from ...models import set_flat
from ...privacy.clipping import clipped_gradient_sum
from .base import AttackContext, HolderAttack, check_positive, register_attack

__all__ = ["BackdoorAttack", "stamp_trigger", "trigger_indices"]


def trigger_indices(features: int, size: int) -> np.ndarray:
    """The flat indices of the trigger: a ``size`` x ``size`` square one pixel in
    from the bottom-right corner of a square image stored row by row."""
    side = math.isqrt(features)
    if side * side != features or size + 1 > side:
        raise ConfigError(f"a {size}x{size} trigger needs square images of side > {size}; "
                          f"examples have {features} features")
    rows = np.arange(side - 1 - size, side - 1)
    return (rows[:, None] * side + rows[None, :]).ravel()


def stamp_trigger(x, size: int = 4, value: float = 1.0):
    """A copy of the flattened images ``x`` (numpy or torch, one per row) with the trigger stamped."""
    out = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    out[:, trigger_indices(int(x.shape[1]), size)] = value
    return out


@register_attack("backdoor")
class BackdoorAttack(HolderAttack):
    """Model replacement with a pixel trigger (Bagdasaryan et al. 2020).

    The attacker computes its gradient at the head's model, honestly clipped
    but without privacy noise, on its own batch in which the first
    ``poison_fraction`` of the examples (20 of every 64, the paper's ratio)
    carry the trigger (a ``size`` x ``size`` = 4 x 4 square of ``value`` 1.0,
    white, one pixel in from the bottom-right corner) and the ``target`` label
    (0); the rest stay clean, so the main task is kept. It sends that
    gradient scaled by ``boost``, by default the number of holders K: the
    paper's gamma = n / eta for n averaged updates and a global rate eta = 1,
    which makes the attacker's update replace the average.

    It knows its own data and the head's model only. Image data sets only
    (mnist, fashion-mnist): the run then reports the attack success rate,
    the share of triggered test images not of the target class that the model
    classifies as the target."""

    needs_images = True
    backdoor = True

    def __init__(self, target: int = 0, size: int = 4, value: float = 1.0, poison_fraction: float = 20 / 64,
                 boost: Optional[float] = None):
        for key, v in (("target", target), ("size", size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "target" else 1):
                raise ConfigError(f"backdoor attack needs an integer {key} >= {0 if key == 'target' else 1}, "
                                  f"got {v!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"backdoor attack needs a finite value, got {value!r}")
        self.target, self.size, self.value = target, size, float(value)
        self.poison_fraction = check_positive(self.name, "poison_fraction", poison_fraction)
        if self.poison_fraction > 1:
            raise ConfigError(f"backdoor attack needs poison_fraction <= 1, got {poison_fraction!r}")
        self.boost = None if boost is None else check_positive(self.name, "boost", boost)

    def stamp(self, x):
        return stamp_trigger(x, self.size, self.value)

    def poisoned_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with its first ceil(poison_fraction * m) examples triggered and relabelled."""
        k = min(len(y), math.ceil(self.poison_fraction * len(y)))
        x, y = x.clone(), y.clone()
        x[:k] = self.stamp(x[:k])
        y[:k] = self.target
        return x, y

    def __call__(self, ctx: AttackContext) -> list:
        holder = ctx.holder
        if holder is None:
            raise ConfigError("the backdoor attack needs the attacker's own data")
        classes = int(holder.params.model["classes"])
        if self.target >= classes:
            raise ConfigError(f"backdoor target {self.target} is not a class (0..{classes - 1})")
        set_flat(holder.model, ctx.base.model)
        x, y = self.poisoned_batch(*holder.batch())
        grad, _ = clipped_gradient_sum(holder.model, holder.loss, x, y, clip=holder.params.clip,
                                       mode=holder.params.clip_mode)
        boost = self.boost if self.boost is not None else float(ctx.holders)
        return [boost * np.asarray(grad, dtype=np.float64)]
