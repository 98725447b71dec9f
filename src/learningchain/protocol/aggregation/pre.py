"""Pre-aggregations, composable with every rule (option ``pre``).

A pre-aggregation maps the block's n messages to new vectors before the rule
runs; each new vector records the messages it was made of (its *members*).
The rule then runs on the new vectors, and the block's selection records the
messages behind what the rule selected: the union of the members of the
vectors it selected, as ascending message indices. So the selection still
answers "whose messages shaped this update" (with NNM that is usually every
message: each mixed vector is made of n - f of them).

* ``nnm`` (Allouah et al. 2023): each message is replaced by the mean of its
  n - f nearest neighbours, itself included: itself, then the n - f - 1
  nearest others by squared distance (exact integer Gram matrix on messages,
  the fixed tree on float vectors), ties to the lower message hash.
* ``bucketing`` (Karimireddy et al. 2022): the messages are shuffled by a
  permutation every validator derives from the block's contents, then cut
  into consecutive buckets of ``bucket`` (s, default 2) messages (the last one
  may be smaller), and each bucket is replaced by its mean. The permutation is
  a Fisher-Yates shuffle of the message indices in ascending message-hash
  order: with seed = keccak256(b"learningchain/bucketing" || the sorted message
  ids), step i (i = n-1 down to 1) swaps position i with position
  j = int(keccak256(seed || i as 4 big-endian bytes)[:8], big-endian) mod (i+1).
  A miner cannot choose the permutation without changing the messages (and so
  the message ids) it includes.
* ``arc`` (adaptive robust clipping, Allouah et al. 2025): with
  k = floor(2 (f/n)(n - f)) (integer arithmetic: (2 f (n - f)) // n), the k
  largest norms are clipped to the (k+1)-th largest norm: norms are ranked
  descending, ties to the lower hash first, and every norm becomes
  min(norm, c) (exact). On messages the norm is the reported s_k, so the
  clipped batch is still fixed-point and every rule after it keeps its integer
  Gram matrix; members are unchanged.

Means of NNM and bucketing add their members' vectors x_j = s_j u_j in
ascending message-hash order (one rounding per addition) and divide once by the
count; the result goes on as a :class:`.vectors.VectorBatch`. Names join with
'+' and apply left to right ("arc+nnm": clip, then mix). f for NNM and ARC is
the option ``pre_f``, else the rule's ``f``, else ceil(K/2) - 1, clamped to
n - 1.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...crypto import keccak256
from ...errors import ConfigError
from .core import Aggregate, Batch, default_f, get_rule, parse_pre
from .exact import _hash_ranks, compute_squared_distances, coordinate_values
from .vectors import vector_batch

__all__ = ["aggregate", "aggregate_with_pre", "pre_aggregate", "nnm", "bucketing", "arc", "bucket_permutation",
           "arc_clip_count", "BUCKETING_TAG"]

BUCKETING_TAG = b"learningchain/bucketing"


def _pre_f(params, n: int) -> int:
    opts = params.aggregator_options
    f = int(opts.get("pre_f", opts.get("f", default_f(params.holders))))
    return max(0, min(f, n - 1))


def _order(batch: Batch) -> list:
    """Row indices in ascending message-hash order."""
    return sorted(range(batch.n), key=batch.keys.__getitem__)


def _means(batch: Batch, groups: list) -> np.ndarray:
    """Row g: the members' vectors added in the group's order (ascending message
    hash), divided by their count."""
    x = coordinate_values(batch)
    out = np.zeros((len(groups), batch.dim), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for g, members in enumerate(groups):
            for j in members:
                out[g] += x[j]
            out[g] /= float(len(members))
    return out


def nnm(batch: Batch, f: int) -> tuple:
    """Nearest-neighbour mixing: (new batch, members of each row)."""
    n = batch.n
    dist = compute_squared_distances(batch)
    ranks = _hash_ranks(batch.keys)
    groups = []
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: (float(dist[i, j]), int(ranks[j])))
        groups.append(tuple(sorted([i] + others[: n - f - 1], key=batch.keys.__getitem__)))
    return vector_batch(_means(batch, groups), batch.keys, batch.round), groups


def bucket_permutation(keys: tuple) -> list:
    """The bucketing shuffle of the message indices (see the module's text)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    seed = keccak256(BUCKETING_TAG + b"".join(bytes(keys[i]) for i in order))
    for i in range(len(order) - 1, 0, -1):
        j = int.from_bytes(keccak256(seed + i.to_bytes(4, "big"))[:8], "big") % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def bucketing(batch: Batch, size: int) -> tuple:
    """Buckets of ``size`` shuffled messages, each replaced by its mean; rows by lowest member hash."""
    perm = bucket_permutation(batch.keys)
    groups = [tuple(sorted(perm[b:b + size], key=batch.keys.__getitem__)) for b in range(0, len(perm), size)]
    groups.sort(key=lambda g: batch.keys[g[0]])
    keys = tuple(batch.keys[g[0]] for g in groups)
    return vector_batch(_means(batch, groups), keys, batch.round), groups


def arc_clip_count(n: int, f: int) -> int:
    """floor(2 (f/n) (n - f)), in integers."""
    return (2 * f * (n - f)) // n if n else 0


def arc(batch: Batch, f: int) -> tuple:
    """Adaptive robust clipping: the k largest norms clipped to the (k+1)-th largest."""
    n = batch.n
    k = arc_clip_count(n, f)
    groups = [(i,) for i in range(n)]
    if k == 0:
        return batch, groups
    ranks = _hash_ranks(batch.keys)
    norms = [float(s) for s in batch.norms]
    ordered = sorted(range(n), key=lambda i: (-norms[i], int(ranks[i])))
    cap = norms[ordered[k]]
    clipped = np.minimum(np.asarray(batch.norms, dtype=np.float64), cap)
    return replace(batch, norms=clipped), groups


def pre_aggregate(batch: Batch, params) -> tuple:
    """Apply the chain's pre-aggregations: (batch for the rule, members of each of its rows)."""
    groups = [(i,) for i in range(batch.n)]
    for name in parse_pre(params.aggregator_options.get("pre", "")):
        if name == "nnm":
            batch, step = nnm(batch, _pre_f(params, batch.n))
        elif name == "bucketing":
            batch, step = bucketing(batch, int(params.aggregator_options.get("bucket", 2)))
        else:
            batch, step = arc(batch, _pre_f(params, batch.n))
        groups = [tuple(sorted({m for j in g for m in groups[j]})) for g in step]
    return batch, groups


def aggregate_with_pre(rule, batch: Batch, params) -> Aggregate:
    """Run ``rule`` after the pre-aggregations; the selection is the union of the selected rows' members."""
    inner, groups = pre_aggregate(batch, params)
    agg = rule(inner, params)
    selection = tuple(sorted({m for i in agg.selection for m in groups[i]}))
    return Aggregate(selection, agg.gradient)


def aggregate(batch: Batch, params) -> Aggregate:
    """Run the chain's rule on a batch (the single entry point validators use)."""
    if batch.n == 0:
        raise ConfigError("cannot aggregate an empty batch")
    spec = get_rule(params.aggregator)
    if params.aggregator_options.get("pre"):
        return aggregate_with_pre(spec.fn, batch, params)
    return spec.fn(batch, params)
