"""Privacy pieces, kept apart as opacus keeps them: clipping, noise mechanisms,
per-round budget schedules and accounting."""

from .clipping import ClipStats, clipped_gradient_sum, plain_gradient_sum
from .mechanisms import GaussianMechanism, L2LaplaceMechanism, NoNoise, uniform_direction
from .schedules import epsilon_for_round, total_epsilon

__all__ = [
    "ClipStats",
    "GaussianMechanism",
    "L2LaplaceMechanism",
    "NoNoise",
    "clipped_gradient_sum",
    "epsilon_for_round",
    "plain_gradient_sum",
    "total_epsilon",
    "uniform_direction",
]
