"""Composition of the paper's pure epsilon-DP releases (l2-Laplace, Eq. 10).

The paper's l2-Laplace releases are pure eps_t-DP. Beside basic composition
(the sum of the eps_t, the headline ``epsilon_total``), the report gives the
tight (epsilon, delta) of their composition:

* ``tight_epsilon`` composes privacy-loss distributions (dp-accounting's PLD,
  pessimistic discretisation, so an upper bound). Each release is given the
  PLD of binary randomised response at eps_t, which dominates every eps_t-DP
  mechanism (Kairouz, Oh and Viswanathan, ICML 2015): the figure holds for any
  pure eps_t-DP release, whatever its output space, and heterogeneous budgets
  (the LearningChainEx decay schedule) compose release by release. Where the
  RDP figure below is lower (budgets far below the PLD grid's step) it is
  used: both bound the same composition;
* ``optimal_epsilon`` is the closed form of the same optimal composition for
  k releases at one eps (Kairouz et al., Thm. 3.3, as the exact hockey-stick
  divergence of k-fold randomised response), without dp-accounting;
* ``rdp_pure_epsilon``: Renyi DP of the same randomised response, composed and
  converted by dp-accounting's ``RdpAccountant``, for comparison.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .schedules import epsilon_for_round

__all__ = ["tight_epsilon", "tight_delta", "optimal_epsilon", "optimal_delta", "rdp_pure_epsilon",
           "round_epsilons", "amplified_epsilon", "calibrate_round_epsilon", "PLD_INTERVAL"]

#: PLD grid: losses are rounded up to multiples of this (the figure stays an upper bound).
PLD_INTERVAL = 1e-4


def _dp():
    try:
        import dp_accounting
        from dp_accounting.privacy_accountant import NeighboringRelation
        from dp_accounting.rdp import RdpAccountant
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise ConfigError("the gaussian mechanism's accountant needs dp-accounting "
                          f"(pip install 'learningchain[privacy]'): {exc}") from None
    return dp_accounting, RdpAccountant, NeighboringRelation.REPLACE_ONE


def _check_pure(epsilons: Sequence[float], delta: Optional[float] = None) -> list:
    eps = [float(e) for e in epsilons]
    if not all(math.isfinite(e) and e >= 0 for e in eps):
        raise ConfigError("per-round epsilons must be finite numbers >= 0")
    if delta is not None and not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    return [e for e in eps if e > 0]


_PLD_CACHE: dict = {}


def _pure_pld(epsilons: Sequence[float]):
    """Composed PLD of pure eps_t-DP releases (equal budgets self-composed)."""
    key = tuple(epsilons)
    if key in _PLD_CACHE:
        return _PLD_CACHE[key]
    _dp()
    from dp_accounting.pld import common, privacy_loss_distribution as pld

    counts: dict = {}
    for e in epsilons:
        counts[e] = counts.get(e, 0) + 1
    out = None
    # one budget: a grid on which its losses +-eps lie exactly (no rounding up)
    interval = epsilons[0] / math.ceil(epsilons[0] / PLD_INTERVAL) if len(counts) == 1 else PLD_INTERVAL
    for e in sorted(counts):
        one = pld.from_privacy_parameters(common.DifferentialPrivacyParameters(e, 0.0),
                                          value_discretization_interval=interval)
        part = one.self_compose(counts[e]) if counts[e] > 1 else one
        out = part if out is None else out.compose(part)
    if len(_PLD_CACHE) > 16:
        _PLD_CACHE.clear()
    _PLD_CACHE[key] = out
    return out


def tight_epsilon(epsilons: Sequence[float], delta: float) -> float:
    """An epsilon such that releases that are eps_t-DP for the ``epsilons`` given
    compose to (epsilon, delta)-DP: dp-accounting's PLD of their optimal
    composition (an upper bound on a grid of at most 1e-4), or its RDP figure
    (``rdp_pure_epsilon``) where that is lower (many budgets below the grid's
    step, as late rounds of the decay schedule), never above basic composition."""
    eps = _check_pure(epsilons, delta)
    if not eps:
        return 0.0
    pld_eps = float(_pure_pld(eps).get_epsilon_for_delta(delta))
    return min(pld_eps, rdp_pure_epsilon(eps, delta), math.fsum(eps))


def tight_delta(epsilons: Sequence[float], epsilon: float) -> float:
    """delta at ``epsilon`` of the composition of eps_t-DP releases (PLD)."""
    eps = _check_pure(epsilons)
    if not eps or epsilon >= math.fsum(eps):
        return 0.0
    return float(_pure_pld(eps).get_delta_for_epsilon(max(0.0, float(epsilon))))


def optimal_delta(epsilon: float, k: int, target_epsilon: float) -> float:
    """Exact delta at ``target_epsilon`` of k releases of one eps-DP mechanism,
    composed optimally (Kairouz, Oh and Viswanathan 2015, Thm. 3.3): the
    hockey-stick divergence of k-fold binary randomised response,
    ``sum_{j: (2j-k) eps > e'} C(k, j) (e^(j eps) - e^(e') e^((k-j) eps)) / (1 + e^eps)^k``."""
    if k < 1 or epsilon <= 0:
        return 0.0
    log_norm = k * (epsilon + math.log1p(math.exp(-epsilon)))  # log (1 + e^eps)^k, stable
    total = 0.0
    for j in range(k, -1, -1):
        if (2 * j - k) * epsilon <= target_epsilon:
            break
        log_c = math.lgamma(k + 1) - math.lgamma(j + 1) - math.lgamma(k - j + 1) - log_norm
        total += math.exp(log_c + j * epsilon) - math.exp(log_c + target_epsilon + (k - j) * epsilon)
    return max(0.0, total)


def optimal_epsilon(epsilon: float, k: int, delta: float) -> float:
    """Smallest epsilon' (to 1e-9) with ``optimal_delta(epsilon, k, epsilon') <= delta``."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if k < 1 or epsilon <= 0:
        return 0.0
    lo, hi = 0.0, k * epsilon
    if optimal_delta(epsilon, k, 0.0) <= delta:
        return 0.0
    while hi - lo > 1e-9 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if optimal_delta(epsilon, k, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def rdp_pure_epsilon(epsilons: Sequence[float], delta: float) -> float:
    """epsilon at ``delta`` of eps_t-DP releases by Renyi DP: each release is
    accounted as binary randomised response at eps_t (its RDP bounds that of
    any eps_t-DP mechanism), composed and converted by dp-accounting."""
    eps = _check_pure(epsilons, delta)
    if not eps:
        return 0.0
    dpa, RdpAccountant, relation = _dp()
    counts: dict = {}
    for e in eps:
        counts[e] = counts.get(e, 0) + 1
    if len(counts) <= 4:
        accountant = RdpAccountant(neighboring_relation=relation)
        for e, n in sorted(counts.items()):
            accountant.compose(dpa.RandomizedResponseDpEvent(noise_parameter=2.0 / (1.0 + math.exp(e)),
                                                             num_buckets=2), n)
        return min(float(accountant.get_epsilon(delta)), math.fsum(eps))
    # many budgets: the same RDP of binary randomised response, vectorised over the
    # accountant's orders (its own event costs tens of ms each), converted by dp-accounting
    from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS, compute_epsilon

    orders = np.asarray(DEFAULT_RDP_ORDERS, dtype=np.float64)[:, None]
    e = np.asarray(sorted(counts), dtype=np.float64)[None, :]
    n = np.asarray([counts[x] for x in sorted(counts)], dtype=np.float64)
    log_p, log_q = -np.logaddexp(0.0, -e), -np.logaddexp(0.0, e)  # log e^eps/(1+e^eps), log 1/(1+e^eps)
    one = np.logaddexp(orders * log_p + (1 - orders) * log_q, orders * log_q + (1 - orders) * log_p) / (orders - 1)
    rdp = (one * n[None, :]).sum(axis=1)
    return min(float(compute_epsilon(orders[:, 0], rdp, delta)[0]), math.fsum(eps))


def round_epsilons(schedule: str, epsilon: float, rounds_run: int, rounds: int) -> list:
    """eps_t of rounds 1..rounds_run under a schedule (privacy/schedules.py)."""
    return [epsilon_for_round(schedule, epsilon, t, rounds) for t in range(1, rounds_run + 1)]


def amplified_epsilon(epsilon: float, rate: float) -> float:
    """Per-round epsilon of an epsilon-DP release computed on a Poisson sample
    that holds each example with probability ``rate``: ``log(1 + q (e^eps - 1))``
    (amplification by subsampling: Li, Qardaji and Su, ASIACCS 2012; Balle, Barthe
    and Gaboardi, NeurIPS 2018). Holds for replace-one neighbours when the release
    is also epsilon-DP under adding or removing an example (as the clipped sum
    is: its sensitivity under that relation is G, or 2G with total clipping)."""
    epsilon, rate = float(epsilon), float(rate)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ConfigError(f"epsilon must be a finite number >= 0, got {epsilon}")
    if not 0 <= rate <= 1:
        raise ConfigError(f"sampling rate must be in [0, 1], got {rate}")
    if rate >= 1.0:
        return epsilon
    return math.log1p(rate * math.expm1(epsilon))


def calibrate_round_epsilon(*, target_epsilon: float, delta: float, schedule: str, rounds: int) -> float:
    """The largest schedule epsilon (to 1e-4 relative) for which the ``rounds``
    l2-Laplace releases of that schedule cost at most (target_epsilon, delta)
    by ``tight_epsilon``: the per-round budget for ``constant``, the run's
    budget before division for ``uniform`` and ``decay``. Always on the private side."""
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ConfigError(f"target epsilon must be a finite number > 0, got {target_epsilon}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")

    def spend(eps: float) -> float:
        return tight_epsilon(round_epsilons(schedule, eps, rounds, rounds), delta)

    if schedule in ("constant", "uniform"):
        # one budget in every round: bisect on the exact closed form (fast), then
        # step down until the PLD figure the summary reports is within the target
        per_round = 1.0 if schedule == "constant" else 1.0 / rounds
        lo, hi = target_epsilon / rounds / per_round, target_epsilon / per_round  # basic, single-release bounds
        while (hi - lo) > 1e-6 * hi:
            mid = 0.5 * (lo + hi)
            if optimal_epsilon(mid * per_round, rounds, delta) <= target_epsilon:
                lo = mid
            else:
                hi = mid
        eps = lo
        while spend(eps) > target_epsilon:
            eps *= 1.0 - 1e-4
        return eps
    basic = math.fsum(round_epsilons(schedule, 1.0, rounds, rounds))  # spend of eps = 1 by basic composition
    lo = target_epsilon / basic  # basic composition within the target: private
    hi = 2.0 * lo
    while spend(hi) <= target_epsilon:
        lo, hi = hi, 2.0 * hi
    while (hi - lo) > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        if spend(mid) <= target_epsilon:
            lo = mid
        else:
            hi = mid
    return lo
