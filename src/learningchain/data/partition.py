"""Splitting a training set among K data holders (the paper divides it equally)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["partition_indices", "PARTITIONS"]

PARTITIONS = ("iid", "label-sorted", "dirichlet")


def partition_indices(labels: np.ndarray, holders: int, rng: np.random.Generator, *, scheme: str = "iid",
                      alpha: float = 0.5) -> list[np.ndarray]:
    """Disjoint index sets, one per holder, covering the training set.

    ``iid``: a random permutation cut into K near-equal parts (the paper's
    setting). ``label-sorted``: sorted by label then cut (the hardest non-IID
    case). ``dirichlet``: the examples of each class are spread over the K
    holders with proportions drawn from the symmetric Dirichlet(alpha * 1_K)
    (one draw per class, as Hsu et al. 2019 and ByzFL do): alpha -> 0 gives
    each holder few classes, alpha -> infinity the IID split; the config key
    is ``dirichlet_alpha`` (default 0.5).
    """
    n = len(labels)
    if not 1 <= holders <= n:
        raise ConfigError(f"cannot split {n} examples among {holders} holders")
    if scheme == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(n), holders)]
    if scheme == "label-sorted":
        order = np.argsort(labels, kind="stable")
        return [np.sort(p) for p in np.array_split(order, holders)]
    if scheme == "dirichlet":
        parts: list[list[int]] = [[] for _ in range(holders)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            share = rng.dirichlet(np.full(holders, alpha))
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        for k in range(holders):  # nobody may be left without data
            if not parts[k]:
                donor = max(range(holders), key=lambda j: len(parts[j]))
                parts[k].append(parts[donor].pop())
        return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(f"unknown partition {scheme!r}; known: {', '.join(PARTITIONS)}")
