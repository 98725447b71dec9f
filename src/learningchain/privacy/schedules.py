"""Per-round privacy budgets (paper Section V-A).

* ``constant``: LearningChain, epsilon in every round (the run is T*epsilon-DP by
  basic composition for a holder whose messages can be linked);
* ``uniform``: LearningChainEx with epsilon_t = epsilon / T;
* ``decay``: LearningChainEx with epsilon_t = epsilon / (t (t + 1)), t = 1..T,
  which sums to epsilon * T / (T + 1) < epsilon for any T.

Rounds here are 1-based (t = height of the block the gradient was computed at + 1).
"""

from __future__ import annotations

import math

from ..errors import ConfigError

__all__ = ["epsilon_for_round", "total_epsilon"]


def epsilon_for_round(schedule: str, epsilon: float, t: int, rounds: int) -> float:
    if t < 1:
        raise ConfigError(f"rounds are numbered from 1, got {t}")
    if schedule == "constant":
        return epsilon
    if schedule == "uniform":
        return epsilon / rounds
    if schedule == "decay":
        return epsilon / (t * (t + 1))
    raise ConfigError(f"unknown privacy schedule {schedule!r}; known: constant, uniform, decay")


def total_epsilon(schedule: str, epsilon: float, rounds_run: int, rounds: int) -> float:
    """Basic (sequential) composition over the rounds a holder took part in."""
    return math.fsum(epsilon_for_round(schedule, epsilon, t, rounds) for t in range(1, rounds_run + 1))
