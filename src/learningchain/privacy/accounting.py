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
* with ``sampling = "poisson"`` each example is in the batch independently with
  probability q = m / N_k (``DataHolder.batch``) and the round is dp-accounting's
  ``PoissonSampledDpEvent``, which it accounts for *add-or-remove-one*
  neighbours: the per-example clipped sum then has sensitivity G (2G with total
  clipping), so the multiplier relative to it is 2z (z);
* a holder releases one noised gradient per round (its message: normalisation
  and quantisation are post-processing), in every round of the run.

The figure is per holder: holders with fewer examples are sampled at a higher
rate and spend more, so the report gives each distinct data-set size.

The paper's l2-Laplace releases are pure eps_t-DP. Beside basic composition
(the sum of the eps_t, the headline ``epsilon_total``), the report gives the
tight (epsilon, delta) of their composition: ``tight_epsilon``,
``optimal_epsilon`` and ``rdp_pure_epsilon`` of :mod:`.composition` (re-exported
here), whose docstring says how each is computed.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..errors import ConfigError
from .composition import (_dp, amplified_epsilon, calibrate_round_epsilon, optimal_delta, optimal_epsilon,
                          rdp_pure_epsilon, round_epsilons, tight_delta, tight_epsilon)
from .schedules import epsilon_for_round, total_epsilon

__all__ = ["gaussian_sigma", "privacy_report", "rdp_epsilon", "calibrate_noise_multiplier", "SAMPLING_SCHEMES",
           "amplified_epsilon", "POISSON_ACCOUNTANT",
           "gaussian_noise_multipliers", "ACCOUNTANT", "TIGHT_ACCOUNTANT", "DEFAULT_DELTA", "tight_epsilon",
           "tight_delta", "optimal_epsilon", "optimal_delta", "rdp_pure_epsilon", "round_epsilons",
           "calibrate_round_epsilon"]

ACCOUNTANT = "rdp (dp-accounting), sampling without replacement, replace-one neighbours"
POISSON_ACCOUNTANT = "rdp (dp-accounting), poisson sampling, add-or-remove-one neighbours"
#: How a holder draws its batch of the expected size m (``sampling``, not consensus):
#: ``fixed`` m of its N_k examples without replacement, ``poisson`` each example
#: independently with probability q = m / N_k.
SAMPLING_SCHEMES = ("fixed", "poisson")
TIGHT_ACCOUNTANT = "pld (dp-accounting): optimal composition of pure eps-DP releases (rdp where lower)"
#: delta of the tight figure of a pure eps-DP run when the run names none.
DEFAULT_DELTA = 1e-5
#: deltas of the (epsilon, delta) curve in the summary
CURVE_DELTAS = (1e-3, 1e-5, 1e-7, 1e-9)


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """Noise scale of the classic Gaussian mechanism (Dwork & Roth, Thm A.1):
    sigma = C * sqrt(2 ln(1.25 / delta)) / epsilon, valid for epsilon < 1."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0, got {epsilon}")
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def _round_event(dpa, z: float, examples: int, batch_size: int, sampling: str = "fixed",
                 clip_mode: str = "per-example"):
    if sampling == "poisson":
        # add-or-remove-one: the per-example clipped sum moves by at most G (2G with
        # total clipping), so the multiplier relative to that sensitivity is 2z (z)
        gaussian = dpa.GaussianDpEvent(z * (1.0 if clip_mode == "total" else 2.0))
        if batch_size >= examples:
            return gaussian
        return dpa.PoissonSampledDpEvent(batch_size / examples, gaussian)
    gaussian = dpa.GaussianDpEvent(z)
    if batch_size >= examples:
        return gaussian
    return dpa.SampledWithoutReplacementDpEvent(examples, batch_size, gaussian)


def _check_sampling(sampling: str) -> None:
    if sampling not in SAMPLING_SCHEMES:
        raise ConfigError(f"unknown sampling {sampling!r}; known: {', '.join(SAMPLING_SCHEMES)}")


def rdp_epsilon(*, noise_multipliers: Sequence[float] | float, rounds: int, examples: int, batch_size: int,
                delta: float, sampling: str = "fixed", clip_mode: str = "per-example") -> float:
    """epsilon at ``delta`` for one holder with ``examples`` records after
    ``rounds`` rounds of the subsampled Gaussian mechanism (see the module doc).

    ``noise_multipliers`` is one z for every round or a sequence of per-round z's
    (sigma = z * 2G). ``sampling`` ``fixed``: m without replacement, replace-one
    neighbours; ``poisson``: each example with probability m / N_k, accounted as
    dp-accounting's ``PoissonSampledDpEvent`` for add-or-remove-one neighbours
    (sensitivity G with per-example clipping, 2G with ``clip_mode`` total).
    """
    dpa, RdpAccountant, relation = _dp()
    _check_sampling(sampling)
    if sampling == "poisson":
        from dp_accounting.privacy_accountant import NeighboringRelation

        relation = NeighboringRelation.ADD_OR_REMOVE_ONE
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
        accountant.compose(_round_event(dpa, z, examples, batch_size, sampling, clip_mode), rounds)
    else:
        zs = [float(z) for z in noise_multipliers][:rounds]
        if len(zs) < rounds or not all(z > 0 for z in zs):
            raise ConfigError(f"need {rounds} positive per-round noise multipliers")
        for z in sorted(set(zs)):
            accountant.compose(_round_event(dpa, z, examples, batch_size, sampling, clip_mode), zs.count(z))
    return float(accountant.get_epsilon(delta))


def calibrate_noise_multiplier(*, epsilon: float, delta: float, rounds: int, examples: int,
                               batch_size: int, sampling: str = "fixed", clip_mode: str = "per-example") -> float:
    """The smallest noise multiplier z (to 1e-4 relative) for which ``rounds``
    rounds cost at most (epsilon, delta) for a holder with ``examples`` records."""
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0 to calibrate the noise, got {epsilon}")

    def eps_of(z: float) -> float:
        return rdp_epsilon(noise_multipliers=z, rounds=rounds, examples=examples, batch_size=batch_size,
                           delta=delta, sampling=sampling, clip_mode=clip_mode)

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


def _gaussian_block(params, rounds_run: int, holder_examples: Optional[Sequence[int]], sampling: str = "fixed") -> dict:
    zs = gaussian_noise_multipliers(params, max(1, rounds_run))
    poisson = sampling == "poisson"
    block: dict = {"accountant": POISSON_ACCOUNTANT if poisson else ACCOUNTANT, "delta": params.delta,
                   "sampling": sampling,
                   "neighbouring": "add-or-remove-one" if poisson else "replace-one",
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
                          delta=params.delta, sampling=sampling, clip_mode=params.clip_mode)
        per_size[n] = eps
    block["per_holder"] = [{"holder": k, "examples": int(n), "sampling_rate": min(1.0, params.batch_size / n),
                            "epsilon": per_size[int(n)]} for k, n in enumerate(holder_examples)]
    block["epsilon_max"] = max(per_size.values())
    block["epsilon_by_examples"] = {str(n): e for n, e in per_size.items()}
    return block


def privacy_report(params, rounds_run: int, *, holder_examples: Optional[Sequence[int]] = None,
                   delta: Optional[float] = None, target_epsilon: Optional[float] = None,
                   sampling: str = "fixed", generator: Optional[str] = None) -> dict:
    """Per-round and whole-run privacy of one holder for the summary.

    ``holder_examples``: each holder's data-set size N_k, for the accountant's
    per-holder figures (the Gaussian mechanism). ``delta``: where the tight
    (epsilon, delta) of the pure eps-DP mechanism is stated (default 1e-5).
    ``target_epsilon``: the whole-run budget the run's epsilon or noise
    multiplier was chosen for, reported with what was chosen. ``sampling``: how
    the holders drew their batches (``SAMPLING_SCHEMES``); ``poisson`` is accounted
    with amplification by Poisson subsampling. ``generator``: the noise's source,
    reported as ``generator``.
    """
    _check_sampling(sampling)
    report = _privacy_report(params, rounds_run, holder_examples=holder_examples, delta=delta, sampling=sampling)
    if params.mechanism != "none":
        report["sampling"] = sampling
    if generator is not None:
        report["generator"] = generator
    if target_epsilon is not None and params.mechanism != "none":
        report["target_epsilon"] = float(target_epsilon)
        if params.mechanism == "gaussian":
            report["chosen"] = {"noise_multiplier": float(params.noise_multiplier)}
        else:
            report["chosen"] = {"epsilon": float(params.epsilon), "schedule": params.schedule,
                                "accountant": TIGHT_ACCOUNTANT}
    return report


def _privacy_report(params, rounds_run: int, *, holder_examples: Optional[Sequence[int]], delta: Optional[float],
                    sampling: str = "fixed"):
    if params.mechanism == "none":
        return {"mechanism": "none", "epsilon_per_round": None, "epsilon_total": None,
                "note": "no noise: the run is not differentially private"}
    if params.mechanism == "gaussian":
        block = _gaussian_block(params, rounds_run, holder_examples, sampling)
        one = None
        if holder_examples:
            one = rdp_epsilon(noise_multipliers=gaussian_noise_multipliers(params, 1), rounds=1,
                              examples=min(holder_examples), batch_size=params.batch_size, delta=params.delta,
                              sampling=sampling, clip_mode=params.clip_mode)
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
    epsilons = round_epsilons(params.schedule, params.epsilon, rounds_run, params.rounds)
    tight_delta_at = DEFAULT_DELTA if delta is None else float(delta)
    report.update(_tight_block(epsilons, tight_delta_at))
    if sampling == "poisson" and holder_examples:
        report["amplified"] = _amplified_block(epsilons, params.batch_size, holder_examples, tight_delta_at)
        report["epsilon_total_amplified"] = report["amplified"]["epsilon_total"]
        report["epsilon_total_tight_amplified"] = report["amplified"]["epsilon_total_tight"]
    return report


def _amplified_block(epsilons: list, batch_size: int, holder_examples: Sequence[int], delta: float) -> dict:
    """Pure eps_t-DP releases on Poisson samples at q = m / N_k: each round costs
    ``amplified_epsilon(eps_t, q)``; the figures are those of the holder with the
    fewest examples (the highest rate), composed as the unamplified ones are."""
    rate = min(1.0, batch_size / min(int(n) for n in holder_examples))
    amp = [amplified_epsilon(e, rate) for e in epsilons]
    block = {"bound": "log(1 + q (e^eps_t - 1)) per round (amplification by Poisson subsampling)",
             "sampling_rate": rate,
             "epsilon_per_round": amp[0] if amp and len(set(amp)) == 1 else (
                 {"first": amp[0], "last": amp[-1]} if amp else None),
             "epsilon_total": math.fsum(amp)}
    tight = _tight_block(amp, delta)
    block["epsilon_total_tight"] = tight["epsilon_total_tight"]
    block["per_holder"] = [{"holder": k, "examples": int(n), "sampling_rate": min(1.0, batch_size / int(n)),
                            "epsilon_total": math.fsum(amplified_epsilon(e, min(1.0, batch_size / int(n)))
                                                       for e in epsilons)}
                           for k, n in enumerate(holder_examples)]
    return block


def _tight_block(epsilons: list, delta: float) -> dict:
    """The tight figures of pure eps-DP releases for the summary."""
    block = {"epsilon_total_tight": None, "delta_tight": delta, "tight_accountant": TIGHT_ACCOUNTANT}
    if not epsilons:
        block["epsilon_total_tight"] = 0.0
        return block
    try:
        block["epsilon_total_tight"] = tight_epsilon(epsilons, delta)
        block["tight_curve"] = {f"{d:.0e}": tight_epsilon(epsilons, d) for d in CURVE_DELTAS}
    except ConfigError:  # no dp-accounting: the closed form covers one budget in every round
        if len(set(epsilons)) != 1:
            block["tight_accountant"] = None
            block["note"] = "tight composition of unequal budgets needs dp-accounting"
            return block
        block["epsilon_total_tight"] = optimal_epsilon(epsilons[0], len(epsilons), delta)
        block["tight_accountant"] = "optimal composition, closed form (Kairouz et al. 2015)"
    return block
