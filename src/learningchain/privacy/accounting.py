"""What a run spends in privacy.

Basic (sequential) composition for the paper's pure epsilon-DP mechanism: a
holder whose messages in T rounds can be linked spends the sum of the per-round
budgets. The paper argues that a fresh pseudo-identity per round keeps each
holder at epsilon; that argument rests on the messages staying unlinkable, which
the summary reports as a separate figure rather than the headline.

The Gaussian mechanism is accounted with Renyi DP (dp-accounting's
``RdpAccountant``, Mironov 2017), amplified by subsampling. What is accounted:

* the neighbouring relation is *replace one example* of the holder's data set
  D_k (its size N_k is public). Per-example clipping at G gives the holder's
  clipped sum an L2 sensitivity of 2G under that relation (Appendix A), so the
  noise is N(0, sigma^2 I) with sigma = z * 2G and z is the noise multiplier;
* each round the holder draws a batch of m of its N_k examples uniformly
  without replacement, independently of earlier rounds (``DataHolder.batch``);
  the accountant uses Wang, Balle and Kasiviswanathan's bound for sampling
  without replacement (AISTATS 2019, Thm. 27). With m >= N_k every round sees
  all the data and no amplification is claimed;
* a holder releases one noised gradient per round (its message: normalisation
  and quantisation are post-processing), in every round of the run.

The figure is per holder: holders with fewer examples are sampled at a higher
rate and spend more, so the report gives each distinct data-set size.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..errors import ConfigError
from .schedules import epsilon_for_round, total_epsilon

__all__ = ["gaussian_sigma", "privacy_report", "rdp_epsilon", "calibrate_noise_multiplier",
           "gaussian_noise_multipliers", "ACCOUNTANT"]

ACCOUNTANT = "rdp (dp-accounting), sampling without replacement, replace-one neighbours"


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """Noise scale of the classic Gaussian mechanism (Dwork & Roth, Thm A.1):
    sigma = C * sqrt(2 ln(1.25 / delta)) / epsilon, valid for epsilon < 1."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0, got {epsilon}")
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def _dp():
    try:
        import dp_accounting
        from dp_accounting.privacy_accountant import NeighboringRelation
        from dp_accounting.rdp import RdpAccountant
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise ConfigError("the gaussian mechanism's accountant needs dp-accounting "
                          f"(pip install 'learningchain[privacy]'): {exc}") from None
    return dp_accounting, RdpAccountant, NeighboringRelation.REPLACE_ONE


def _round_event(dpa, z: float, examples: int, batch_size: int):
    gaussian = dpa.GaussianDpEvent(z)
    if batch_size >= examples:
        return gaussian
    return dpa.SampledWithoutReplacementDpEvent(examples, batch_size, gaussian)


def rdp_epsilon(*, noise_multipliers: Sequence[float] | float, rounds: int, examples: int, batch_size: int,
                delta: float) -> float:
    """epsilon at ``delta`` for one holder with ``examples`` records after
    ``rounds`` rounds of the subsampled Gaussian mechanism (see the module doc).

    ``noise_multipliers`` is one z for every round or a sequence of per-round z's.
    """
    dpa, RdpAccountant, relation = _dp()
    if rounds < 1:
        return 0.0
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if examples < 1 or batch_size < 1:
        raise ConfigError(f"need examples >= 1 and batch_size >= 1, got {examples} and {batch_size}")
    accountant = RdpAccountant(neighboring_relation=relation)
    if isinstance(noise_multipliers, (int, float)):
        z = float(noise_multipliers)
        if not z > 0:
            raise ConfigError(f"noise multiplier must be > 0, got {z}")
        accountant.compose(_round_event(dpa, z, examples, batch_size), rounds)
    else:
        zs = [float(z) for z in noise_multipliers][:rounds]
        if len(zs) < rounds or not all(z > 0 for z in zs):
            raise ConfigError(f"need {rounds} positive per-round noise multipliers")
        for z in sorted(set(zs)):
            accountant.compose(_round_event(dpa, z, examples, batch_size), zs.count(z))
    return float(accountant.get_epsilon(delta))


def calibrate_noise_multiplier(*, epsilon: float, delta: float, rounds: int, examples: int,
                               batch_size: int) -> float:
    """The smallest noise multiplier z (to 1e-4 relative) for which ``rounds``
    rounds cost at most (epsilon, delta) for a holder with ``examples`` records."""
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0 to calibrate the noise, got {epsilon}")

    def eps_of(z: float) -> float:
        return rdp_epsilon(noise_multipliers=z, rounds=rounds, examples=examples, batch_size=batch_size,
                           delta=delta)

    lo, hi = 0.05, 1.0
    while eps_of(hi) > epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise ConfigError(f"no noise multiplier below 1e6 reaches epsilon={epsilon} at delta={delta}")
    while eps_of(lo) <= epsilon and lo > 1e-6:
        hi, lo = lo, lo / 2.0
    # bisection on a monotone function: the answer is always on the private side
    while (hi - lo) > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        if eps_of(mid) <= epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def gaussian_noise_multipliers(params, rounds_run: int) -> list:
    """Per-round z = sigma_t / (2G) of the chain's gaussian mechanism."""
    if params.noise_multiplier > 0:
        return [float(params.noise_multiplier)] * rounds_run
    out = []
    for t in range(1, rounds_run + 1):
        eps_t = epsilon_for_round(params.schedule, params.epsilon, t, params.rounds)
        sigma = gaussian_sigma(epsilon=eps_t, delta=params.delta, sensitivity=2.0 * params.clip)
        out.append(sigma / (2.0 * params.clip))
    return out


def _gaussian_block(params, rounds_run: int, holder_examples: Optional[Sequence[int]]) -> dict:
    zs = gaussian_noise_multipliers(params, max(1, rounds_run))
    block: dict = {"accountant": ACCOUNTANT, "delta": params.delta,
                   "noise_multiplier": zs[0] if len(set(zs)) == 1 else {"first": zs[0], "last": zs[-1]},
                   "batch_size": params.batch_size}
    sizes = sorted(set(int(n) for n in holder_examples)) if holder_examples else []
    if not sizes or rounds_run < 1:
        return block
    if len(set(zs)) > 64:
        block["note"] = "per-round noise multipliers all differ (decay schedule): accountant not run"
        return block
    per_size = {}
    for n in sizes:
        eps = rdp_epsilon(noise_multipliers=zs, rounds=rounds_run, examples=n, batch_size=params.batch_size,
                          delta=params.delta)
        per_size[n] = eps
    block["per_holder"] = [{"holder": k, "examples": int(n), "sampling_rate": min(1.0, params.batch_size / n),
                            "epsilon": per_size[int(n)]} for k, n in enumerate(holder_examples)]
    block["epsilon_max"] = max(per_size.values())
    block["epsilon_by_examples"] = {str(n): e for n, e in per_size.items()}
    return block


def privacy_report(params, rounds_run: int, *, holder_examples: Optional[Sequence[int]] = None) -> dict:
    """Per-round and whole-run privacy of one holder for the summary.

    ``holder_examples``: each holder's data-set size N_k, for the accountant's
    per-holder figures (the Gaussian mechanism).
    """
    if params.mechanism == "none":
        return {"mechanism": "none", "epsilon_per_round": None, "epsilon_total": None,
                "note": "no noise: the run is not differentially private"}
    if params.mechanism == "gaussian":
        block = _gaussian_block(params, rounds_run, holder_examples)
        one = None
        if holder_examples:
            one = rdp_epsilon(noise_multipliers=gaussian_noise_multipliers(params, 1), rounds=1,
                              examples=min(holder_examples), batch_size=params.batch_size, delta=params.delta)
        return {
            "mechanism": "gaussian",
            "schedule": params.schedule if params.noise_multiplier == 0 else None,
            "epsilon_per_round": one,
            "epsilon_total": block.get("epsilon_max"),
            "delta_total": params.delta,
            "composition": "rdp",
            "rdp": block,
        }
    first = epsilon_for_round(params.schedule, params.epsilon, 1, params.rounds)
    last = epsilon_for_round(params.schedule, params.epsilon, max(1, rounds_run), params.rounds)
    per_round = first if params.schedule != "decay" else {"first": first, "last": last}
    total = total_epsilon(params.schedule, params.epsilon, rounds_run, params.rounds)
    return {
        "mechanism": params.mechanism,
        "schedule": params.schedule,
        "epsilon_per_round": per_round,
        "epsilon_total": total,
        "composition": "basic",
        "epsilon_if_unlinkable": max(
            epsilon_for_round(params.schedule, params.epsilon, t, params.rounds)
            for t in range(1, max(1, rounds_run) + 1)),
    }
