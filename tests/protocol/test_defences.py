"""The geometric median, MDA and the pre-aggregations (NNM, bucketing, ARC)
against slow references written from the papers' definitions (plain Python
floats and numpy float64), their determinism, and their robustness to an
honest-majority batch with Gaussian attackers."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learningchain.crypto import keccak256
from learningchain.errors import ConfigError
from learningchain.protocol.aggregation import RULES, Batch, aggregate, bucket_permutation, mda_subsets

from ..helpers import small_params
from .test_rules import make_batch, params_for, ref_krum_scores, scenario, xs

# -- slow references ---------------------------------------------------------------


def dist2(a, b):
    return sum((u - v) ** 2 for u, v in zip(a, b))


def ref_coordinate_median(x):
    out = []
    for col in zip(*x):
        s = sorted(col)
        n = len(s)
        out.append(s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)
    return out


def ref_geometric_median(x, iterations, nu):
    """Weiszfeld's smoothed iteration from the coordinate-wise median."""
    z = ref_coordinate_median(x)
    for _ in range(iterations):
        w = [1.0 / max(nu, math.sqrt(dist2(xk, z))) for xk in x]
        z = [sum(wk * xk[i] for wk, xk in zip(w, x)) / sum(w) for i in range(len(z))]
    return np.array(z)


def ref_mda(x, keys, f):
    """Every subset of n - f vectors; least diameter, ties to the least sorted keys."""
    n = len(x)
    best = None
    for kept in itertools.combinations(range(n), n - f):
        diam = max((dist2(x[a], x[b]) for a in kept for b in kept), default=0.0)
        tie = sorted(keys[i] for i in kept)
        if best is None or (diam, tie) < (best[0], best[1]):
            best = (diam, tie, kept)
    kept = best[2]
    return kept, np.mean(np.array([x[i] for i in kept]), axis=0)


def ref_nnm(x, keys, f):
    """Each vector replaced by the mean of its n - f nearest (itself included)."""
    x = np.array(x)
    n = len(x)
    out, members = [], []
    for i in range(n):
        near = sorted(range(n), key=lambda j: (j != i, float(np.sum((x[i] - x[j]) ** 2)), keys[j]))[: n - f]
        members.append(set(near))
        out.append(x[sorted(near)].mean(axis=0))
    return out, members


def ref_permutation(keys):
    """Fisher-Yates driven by keccak of the sorted message ids, as documented."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    seed = keccak256(b"learningchain/bucketing" + b"".join(keys[i] for i in order))
    for i in reversed(range(1, len(order))):
        j = int.from_bytes(bytes(keccak256(seed + i.to_bytes(4, "big")))[:8], "big") % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def ref_arc_norms(norms, f):
    n = len(norms)
    k = math.floor(2 * (f / n) * (n - f)) if n else 0
    if k == 0:
        return list(norms)
    cap = sorted(norms, reverse=True)[k]
    return [min(s, cap) for s in norms]


def grad(agg, m=3):
    return agg.gradient * m


# -- geometric median ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("iterations,nu", [(8, 1e-6), (3, 0.5), (20, 1e-6)])
def test_geometric_median_matches_weiszfeld(seed, iterations, nu):
    batch = scenario(seed)
    agg = aggregate(batch, params_for(batch, "geometric-median", iterations=iterations, nu=nu))
    assert agg.selection == tuple(range(batch.n))
    np.testing.assert_allclose(grad(agg), ref_geometric_median(xs(batch), iterations, nu), rtol=1e-9, atol=1e-12)


def test_geometric_median_of_a_duplicate_point_is_finite():
    v = np.array([1.0, 2.0, 3.0])
    batch = make_batch([v, v, v, -v])
    agg = aggregate(batch, params_for(batch, "geometric-median", batch_size=1))
    assert np.all(np.isfinite(agg.gradient))
    np.testing.assert_allclose(agg.gradient, xs(batch)[0], rtol=1e-5)


# -- minimum-diameter averaging ----------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_mda_matches_the_exhaustive_definition(seed):
    batch = scenario(seed, n=int(np.random.default_rng(seed).integers(5, 11)))
    f = (batch.n - 1) // 3
    agg = aggregate(batch, params_for(batch, "mda", f=f))
    kept, mean = ref_mda(xs(batch), batch.keys, f)
    assert agg.selection == tuple(sorted(kept))
    np.testing.assert_allclose(grad(agg), mean, rtol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_mda_search_with_many_ties_is_the_exhaustive_one(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    # few distinct points on a small grid: equal diameters everywhere
    batch = make_batch([np.array([3.0, 0.0, 0.0]) + rng.integers(-1, 2, size=3) for _ in range(n)], rng=rng)
    f = int(rng.integers(0, (n - 1) // 2 + 1))
    agg = aggregate(batch, params_for(batch, "mda", f=f))
    kept, _ = ref_mda(xs(batch), batch.keys, f)
    assert agg.selection == tuple(sorted(kept))


def test_mda_ties_go_to_the_lower_hashes():
    v = np.array([1.0, 2.0, 3.0])
    keys = [b"\x09" * 32, b"\x01" * 32, b"\x05" * 32, b"\x02" * 32]
    batch = make_batch([v, v, v, v], keys=keys)
    agg = aggregate(batch, params_for(batch, "mda", f=1))
    assert sorted(batch.keys[i] for i in agg.selection) == sorted(keys)[:3]


def test_mda_refuses_a_search_too_large_at_genesis():
    assert mda_subsets(30, 14) == math.comb(30, 14)
    with pytest.raises(ConfigError, match="candidate subsets, above max_subsets"):
        small_params(aggregator="mda", holders=30, max_messages=64)
    small_params(aggregator="mda", holders=30, max_messages=64, aggregator_options={"f": 2})
    with pytest.raises(ConfigError, match="max_subsets"):
        small_params(aggregator="mda", holders=6, max_messages=64, aggregator_options={"f": 2, "max_subsets": 100})


# -- pre-aggregations ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_nnm_then_mean_and_multi_krum_match_the_reference(seed):
    batch = scenario(seed, n=12)
    f = 3
    mixed, members = ref_nnm(xs(batch), batch.keys, f)
    agg = aggregate(batch, params_for(batch, "mean", pre="nnm", pre_f=f))
    np.testing.assert_allclose(grad(agg), np.mean(mixed, axis=0), rtol=1e-10)
    assert agg.selection == tuple(range(batch.n))
    agg = aggregate(batch, params_for(batch, "multi-krum", pre="nnm", f=f))
    scores = ref_krum_scores([list(v) for v in mixed], f)
    best = sorted(range(batch.n), key=lambda i: (scores[i], batch.keys[i]))[: batch.n - f]
    np.testing.assert_allclose(grad(agg), np.mean([mixed[i] for i in best], axis=0), rtol=1e-9)
    assert agg.selection == tuple(sorted(set().union(*(members[i] for i in best))))


def test_the_bucketing_permutation_is_the_documented_shuffle():
    rng = np.random.default_rng(1)
    keys = tuple(bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(13))
    assert bucket_permutation(keys) == ref_permutation(keys)
    assert sorted(bucket_permutation(keys)) == list(range(13))
    shuffled = tuple(keys[i] for i in rng.permutation(13))
    assert [keys[i] for i in bucket_permutation(keys)] == [shuffled[i] for i in bucket_permutation(shuffled)]


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_bucketing_then_median_matches_the_reference(size):
    batch = scenario(3, n=11)
    x = np.array(xs(batch))
    perm = ref_permutation(batch.keys)
    buckets = [perm[b:b + size] for b in range(0, batch.n, size)]
    means = [x[sorted(b)].mean(axis=0) for b in buckets]
    agg = aggregate(batch, params_for(batch, "median", pre="bucketing", bucket=size))
    np.testing.assert_allclose(grad(agg), np.median(np.array(means), axis=0), rtol=1e-10)
    # krum picks one bucket: the selection is that bucket's messages
    agg = aggregate(batch, params_for(batch, "krum", pre="bucketing", bucket=size, f=1))
    assert any(agg.selection == tuple(sorted(b)) for b in buckets)


@pytest.mark.parametrize("seed", range(4))
def test_arc_clips_the_largest_norms_to_the_next(seed):
    batch = scenario(seed, n=10)
    f = 3
    clipped = ref_arc_norms([float(s) for s in batch.norms], f)
    assert sum(c < s for c, s in zip(clipped, batch.norms)) <= math.floor(2 * f / 10 * 7)
    x = [[c * (int(v) / 2**20) for v in batch.q[k]] for k, c in enumerate(clipped)]
    agg = aggregate(batch, params_for(batch, "mean", pre="arc", pre_f=f))
    np.testing.assert_allclose(grad(agg), np.mean(np.array(x), axis=0), rtol=1e-12)
    agg = aggregate(batch, params_for(batch, "krum", pre="arc", f=f))
    scores = ref_krum_scores(x, f)
    assert agg.selection == (min(range(batch.n), key=lambda i: (scores[i], batch.keys[i])),)


def test_arc_then_nnm_composes_left_to_right():
    batch = scenario(4, n=9)
    f = 2
    clipped = ref_arc_norms([float(s) for s in batch.norms], f)
    x = [[c * (int(v) / 2**20) for v in batch.q[k]] for k, c in enumerate(clipped)]
    mixed, _ = ref_nnm(x, batch.keys, f)
    agg = aggregate(batch, params_for(batch, "mean", pre="arc+nnm", pre_f=f))
    np.testing.assert_allclose(grad(agg), np.mean(mixed, axis=0), rtol=1e-10)


@pytest.mark.parametrize("options,match", [
    ({"pre": "smoothing"}, "must name pre-aggregations"),
    ({"pre": "nnm+"}, "must name pre-aggregations"),
    ({"pre": 3}, "must be str"),
    ({"pre": "bucketing", "bucket": 0}, ">= 1"),
    ({"bucket": 2}, "needs pre = 'bucketing'"),
    ({"pre": "bucketing", "pre_f": 1}, "pre_f' needs"),
])
def test_bad_pre_options_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        small_params(aggregator="mean", aggregator_options=options)


# -- determinism and robustness ------------------------------------------------------------

NEW = [("geometric-median", {}), ("mda", {"f": 3}), ("mean", {"pre": "nnm"}), ("multi-krum", {"pre": "nnm"}),
       ("median", {"pre": "bucketing", "bucket": 2}), ("geometric-median", {"pre": "bucketing"}),
       ("krum", {"pre": "arc"}), ("trimmed-mean", {"pre": "arc+nnm"}), ("l-nearest", {"pre": "nnm"}),
       ("centered-clipping", {"pre": "nnm", "tau": 5.0})]


def _canonical(batch):
    order = sorted(range(batch.n), key=batch.keys.__getitem__)
    return Batch(batch.q[order], batch.norms[order], tuple(batch.keys[i] for i in order), batch.bits)


@pytest.mark.parametrize("rule,options", NEW, ids=lambda v: str(v))
def test_new_rules_are_order_invariant_and_repeatable(rule, options):
    batch = _canonical(scenario(12, n=11, d=7))
    params = params_for(batch, rule, **options)
    first = aggregate(batch, params)
    again = aggregate(_canonical(scenario(12, n=11, d=7)), params)
    assert first.selection == again.selection and first.gradient.tobytes() == again.gradient.tobytes()
    perm = np.random.default_rng(5).permutation(batch.n)
    shuffled = Batch(batch.q[perm], batch.norms[perm], tuple(batch.keys[i] for i in perm), batch.bits)
    other = aggregate(shuffled, params)
    assert {batch.keys[i] for i in first.selection} == {shuffled.keys[i] for i in other.selection}
    back = aggregate(_canonical(shuffled), params)  # a block always holds its messages in canonical order
    assert back.selection == first.selection and back.gradient.tobytes() == first.gradient.tobytes()


ROBUST = [("geometric-median", {}), ("mda", {}), ("multi-krum", {"pre": "nnm"}), ("median", {"pre": "bucketing"}),
          ("multi-krum", {"pre": "arc"}), ("geometric-median", {"pre": "arc+nnm"}), ("krum", {"pre": "nnm"}),
          ("trimmed-mean", {"pre": "nnm"}), ("mda", {"pre": "arc"})]


@pytest.mark.parametrize("rule,options", ROBUST, ids=lambda v: str(v))
def test_gaussian_attackers_leave_the_honest_mean_nearly_unchanged(rule, options):
    rng = np.random.default_rng(9)
    d, honest_n, byz_n = 8, 9, 3
    centre = np.linspace(1.0, 2.0, d)
    honest = [centre + 0.2 * rng.normal(size=d) for _ in range(honest_n)]
    byz = [200.0 * rng.normal(size=d) for _ in range(byz_n)]
    batch = make_batch(honest + byz, rng=rng)
    options = dict(options)
    if "f" in RULES[rule].options:
        options.setdefault("f", byz_n)
    else:
        options.setdefault("pre_f", byz_n) if "pre" in options and "bucketing" not in options["pre"] else None
    agg = aggregate(batch, params_for(batch, rule, batch_size=1, **options))
    honest_mean = np.mean(honest, axis=0)
    assert np.linalg.norm(agg.gradient - honest_mean) < 0.5 * np.linalg.norm(honest_mean)


def test_float_vector_batches_keep_their_vectors_and_distances():
    from learningchain.protocol.aggregation import compute_squared_distances, coordinate_values, vector_batch

    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 11)) * 10.0 ** rng.integers(-3, 3, size=(7, 1))
    batch = vector_batch(x, tuple(bytes([i]) * 32 for i in range(7)))
    np.testing.assert_allclose(coordinate_values(batch), x, rtol=1e-14)
    dist = compute_squared_distances(batch)
    assert np.array_equal(dist, dist.T) and not dist.diagonal().any()
    want = [[sum((a - b) ** 2 for a, b in zip(x[i], x[j])) for j in range(7)] for i in range(7)]
    np.testing.assert_allclose(dist, want, rtol=1e-12)


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("pre", ["nnm", "bucketing", "arc", "arc+nnm", "nnm+bucketing"])
def test_every_rule_takes_every_pre_aggregation(rule, pre):
    for n in (1, 2, 9):
        batch = scenario(n, n=n, d=4) if n > 2 else make_batch([np.array([1.0, 2.0, 3.0, 4.0]) * (k + 1)
                                                                 for k in range(n)])
        agg = aggregate(batch, params_for(batch, rule, batch_size=1, pre=pre))
        assert agg.selection and list(agg.selection) == sorted(set(agg.selection))
        assert all(0 <= i < n for i in agg.selection) and np.all(np.isfinite(agg.gradient))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), which=st.integers(0, len(NEW) - 1))
def test_order_and_repeat_property(seed, which):
    rule, options = NEW[which]
    batch = _canonical(scenario(seed, n=9, d=5))
    params = params_for(batch, rule, **options)
    perm = np.random.default_rng(seed).permutation(batch.n)
    shuffled = Batch(batch.q[perm], batch.norms[perm], tuple(batch.keys[i] for i in perm), batch.bits)
    a, again = aggregate(batch, params), aggregate(_canonical(scenario(seed, n=9, d=5)), params)
    assert a.selection == again.selection and a.gradient.tobytes() == again.gradient.tobytes()
    b = aggregate(shuffled, params)  # rows out of canonical order: the same messages, sums in another order
    assert {batch.keys[i] for i in a.selection} == {shuffled.keys[i] for i in b.selection}
    np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-9, atol=1e-12)
