"""What a run spends in privacy.

Basic (sequential) composition for the paper's pure epsilon-DP mechanism: a
holder whose messages in T rounds can be linked spends the sum of the per-round
budgets. The paper argues that a fresh pseudo-identity per round keeps each
holder at epsilon; that argument rests on the messages staying unlinkable, which
the summary reports as a separate figure rather than the headline.
"""

from __future__ import annotations

import math

from ..errors import ConfigError
from .schedules import epsilon_for_round, total_epsilon

__all__ = ["gaussian_sigma", "privacy_report"]


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """Noise scale of the classic Gaussian mechanism (Dwork & Roth, Thm A.1):
    sigma = C * sqrt(2 ln(1.25 / delta)) / epsilon, valid for epsilon < 1."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0, got {epsilon}")
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def privacy_report(params, rounds_run: int) -> dict:
    """Per-round and whole-run privacy of one holder for the summary."""
    if params.mechanism == "none":
        return {"mechanism": "none", "epsilon_per_round": None, "epsilon_total": None,
                "note": "no noise: the run is not differentially private"}
    first = epsilon_for_round(params.schedule, params.epsilon, 1, params.rounds)
    last = epsilon_for_round(params.schedule, params.epsilon, max(1, rounds_run), params.rounds)
    per_round = first if params.schedule != "decay" else {"first": first, "last": last}
    total = total_epsilon(params.schedule, params.epsilon, rounds_run, params.rounds)
    report = {
        "mechanism": params.mechanism,
        "schedule": params.schedule,
        "epsilon_per_round": per_round,
        "epsilon_total": total,
        "composition": "basic",
        "epsilon_if_unlinkable": max(
            epsilon_for_round(params.schedule, params.epsilon, t, params.rounds)
            for t in range(1, max(1, rounds_run) + 1)),
    }
    if params.mechanism == "gaussian":
        report["delta_total"] = params.delta * rounds_run
    return report
