"""Attacks crafted from the honest vectors without knowing the rule: Inf,
Mimic, Min-Max and Min-Sum."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...errors import ConfigError
from .base import AttackContext, HolderAttack, check_positive, honest_matrix, register_attack

__all__ = ["InfAttack", "MimicAttack", "MinMaxAttack", "MinSumAttack", "perturbation", "search_gamma",
           "PERTURBATIONS"]


@register_attack("inf")
class InfAttack(HolderAttack):
    """Inf, as in ByzFL (Allouah et al., ``byzfl.Inf``): a vector of huge norm.

    ByzFL sends +infinity in every coordinate; a message here must have a
    finite norm (the holder's encoding refuses anything else), so every
    coordinate is ``value`` (1e100 by default): the norm sqrt(d) * 1e100 is as
    good as infinite for the model, and its square, which Krum's and the
    other rules' distances need, stays finite."""

    def __init__(self, value: float = 1e100):
        self.value = check_positive("inf", "value", value)
        if not self.value <= 1e150:
            raise ConfigError(f"inf attack needs value <= 1e150 (a message's squared norm must be finite), "
                              f"got {value!r}")

    def __call__(self, ctx: AttackContext) -> list:
        return [np.full(ctx.dim, self.value)]


def principal_holder(honest: np.ndarray) -> int:
    """The honest vector that deviates most along the honest vectors' first
    principal direction z (max over i of <z, x_i - mu>^2), ties to the lower index."""
    centred = honest - honest.mean(axis=0)
    if len(honest) < 2 or not np.any(centred):
        return 0
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    scores = (centred @ vt[0]) ** 2
    return int(np.flatnonzero(scores == scores.max())[0])


@register_attack("mimic")
class MimicAttack(HolderAttack):
    """Mimic (Karimireddy, He and Jaggi, "Byzantine-Robust Learning on
    Heterogeneous Datasets via Bucketing", ICLR 2022): every Byzantine holder
    copies one honest holder's vector, over-representing that holder's data.

    Which one: with ``worker`` given, the honest holder of that rank (honest
    holders in holder order, rank modulo their number); by default the paper's
    heuristic, the honest vector farthest along the honest vectors' first
    principal direction (largest <z, x_i - mu>^2, ties to the lower rank),
    computed afresh each round (the paper learns z over warm-up rounds; a
    stateless attack recomputes it). Every attacker computes the same choice."""

    omniscient = True

    def __init__(self, worker: Optional[int] = None):
        if worker is not None and (isinstance(worker, bool) or not isinstance(worker, int) or worker < 0):
            raise ConfigError(f"mimic attack needs worker >= 0 (an honest holder's rank), got {worker!r}")
        self.worker = worker

    def __call__(self, ctx: AttackContext) -> list:
        honest = honest_matrix(ctx, "mimic")
        i = principal_holder(honest) if self.worker is None else self.worker % len(honest)
        return [honest[i].copy()]


#: Shejwalkar and Houmansadr's perturbation vectors nabla^p (Sec. IV-B).
PERTURBATIONS = ("unit", "std", "sign")


def perturbation(honest: np.ndarray, kind: str) -> np.ndarray:
    """nabla^p: the inverse unit vector -mu/||mu||, the inverse standard deviation
    -std (coordinate-wise, ddof 0 as in the authors' code) or the inverse sign -sign(mu)."""
    mu = honest.mean(axis=0)
    if kind == "unit":
        norm = float(np.linalg.norm(mu))
        return -mu / norm if norm > 0 else np.zeros_like(mu)
    if kind == "std":
        return -honest.std(axis=0)
    if kind == "sign":
        return -np.sign(mu)
    raise ConfigError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")


def search_gamma(ok, gamma_init: float, tolerance: float) -> float:
    """The authors' search for the largest gamma with ok(gamma): start at
    gamma_init, step by half the previous step up on success and down on
    failure, until the step is below tolerance; the last success (0 if none)."""
    gamma, step, success = gamma_init, gamma_init, 0.0
    while abs(success - gamma) > tolerance:
        if ok(gamma):
            success = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return success


class _ShejwalkarAttack(HolderAttack):
    omniscient = True

    def __init__(self, perturbation: str = "unit", gamma_init: float = 10.0, tolerance: float = 1e-5):
        if perturbation not in PERTURBATIONS:
            raise ConfigError(f"{self.name} attack: unknown perturbation {perturbation!r}; "
                              f"known: {', '.join(PERTURBATIONS)}")
        self.perturbation = perturbation
        self.gamma_init = check_positive(self.name, "gamma_init", gamma_init)
        self.tolerance = check_positive(self.name, "tolerance", tolerance)

    def feasible(self, honest: np.ndarray):
        raise NotImplementedError

    def __call__(self, ctx: AttackContext) -> list:
        honest = honest_matrix(ctx, self.name)
        mu = honest.mean(axis=0)
        p = perturbation(honest, self.perturbation)
        within = self.feasible(honest)
        gamma = search_gamma(lambda g: within(mu + g * p), self.gamma_init, self.tolerance)
        return [mu + gamma * p]


def _sq_distances(honest: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", honest, honest)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * honest @ honest.T, 0.0)


@register_attack("min-max")
class MinMaxAttack(_ShejwalkarAttack):
    """Min-Max (Shejwalkar and Houmansadr, "Manipulating the Byzantine",
    NDSS 2021, Sec. IV-B, AGR-agnostic): every Byzantine holder sends
    mu + gamma p (mu the honest mean, p the ``perturbation``), with the largest
    gamma such that max_i ||x_m - x_i|| <= max_{i,j} ||x_i - x_j|| over the
    honest vectors. Defaults as in the authors' code: inverse unit vector,
    search from gamma 10 to a step of 1e-5."""

    def feasible(self, honest: np.ndarray):
        bound = float(_sq_distances(honest).max())
        return lambda x: float((((honest - x) ** 2).sum(axis=1)).max()) <= bound


@register_attack("min-sum")
class MinSumAttack(_ShejwalkarAttack):
    """Min-Sum (Shejwalkar and Houmansadr, NDSS 2021, Sec. IV-B): as Min-Max,
    with the largest gamma such that sum_i ||x_m - x_i||^2 <= max_i sum_j
    ||x_i - x_j||^2 over the honest vectors."""

    def feasible(self, honest: np.ndarray):
        bound = float(_sq_distances(honest).sum(axis=1).max())
        return lambda x: float(((honest - x) ** 2).sum()) <= bound
