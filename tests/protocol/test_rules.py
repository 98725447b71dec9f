"""Every aggregation rule against a slow, obvious reference written from the
papers' definitions (float vectors, Python loops), and the exactness helpers
against exact arithmetic."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from learningchain.errors import ConfigError
from learningchain.protocol.aggregation import (
    RULES,
    Batch,
    aggregate,
    compute_cosine_ranking,
    compute_l_nearest,
    compute_squared_distances,
    fixed_order_row_sums,
    norm_bound,
    weighted_unit_sum,
)
from learningchain.protocol.quantize import dequantize, quantize_unit

from ..helpers import small_params

BITS = 20


def make_batch(vectors, keys=None, rng=None, round_=0):
    vectors = [np.asarray(v, dtype=np.float64) for v in vectors]
    q = np.stack([quantize_unit(v / np.linalg.norm(v), BITS) for v in vectors])
    norms = np.array([float(np.linalg.norm(v)) for v in vectors])
    if keys is None:
        rng = rng or np.random.default_rng(0)
        keys = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in vectors]
    return Batch(q, norms, tuple(keys), BITS, round_)


def params_for(batch, aggregator, batch_size=3, **opts):
    d = batch.dim
    # a rule whose work grows fast with n (mda) is given the block's own size as its limit
    max_messages = batch.n if RULES[aggregator].message_cap else 1024
    return small_params(dim=d, holders=batch.n, batch_size=batch_size, aggregator=aggregator,
                        aggregator_options=opts, max_messages=max_messages,
                        model={"kind": "logistic", "inputs": d - 1, "classes": 2})


def xs(batch):
    """The vectors the messages stand for, x_k = s_k * q_k / 2^bits, in plain floats."""
    return [[batch.norms[k] * (int(v) / 2**BITS) for v in batch.q[k]] for k in range(batch.n)]


def scenario(seed, n=None, d=None, byz_scale=50.0):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(7, 25))
    d = d or int(rng.integers(2, 12))
    honest = [np.ones(d) + rng.normal(scale=0.7, size=d) for _ in range(n - n // 4)]
    byz = [rng.normal(scale=byz_scale, size=d) for _ in range(n // 4)]
    return make_batch(honest + byz, rng=rng)


# -- slow references ---------------------------------------------------------------


def ref_distances(x):
    n = len(x)
    return [[sum((a - b) ** 2 for a, b in zip(x[i], x[j])) for j in range(n)] for i in range(n)]


def ref_krum_scores(x, f):
    n = len(x)
    dist = ref_distances(x)
    k = min(n - 1, max(1, n - f - 2))
    return [sum(sorted(dist[i][j] for j in range(n) if j != i)[:k]) for i in range(n)]


def ref_mean(x, idx):
    d = len(x[0])
    return [sum(x[k][i] for k in idx) / len(idx) for i in range(d)]


# -- the rules -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_median_is_numpys_coordinate_median_exactly(seed):
    batch = scenario(seed, n=[7, 8, 11, 12, 5, 6][seed])
    agg = aggregate(batch, params_for(batch, "median", batch_size=4))
    x = np.array(xs(batch))
    assert np.array_equal(agg.gradient, np.median(x, axis=0) / 4)
    assert agg.selection == tuple(range(batch.n))


@pytest.mark.parametrize("seed", range(6))
def test_trimmed_mean_matches_scipy(seed):
    batch = scenario(seed)
    f = 1 + seed % 3
    agg = aggregate(batch, params_for(batch, "trimmed-mean", batch_size=2, f=f))
    want = stats.trim_mean(np.array(xs(batch)), f / batch.n, axis=0) / 2
    np.testing.assert_allclose(agg.gradient, want, rtol=1e-12, atol=1e-13)


def test_trimmed_mean_clamps_f_to_what_n_allows():
    batch = scenario(3, n=7)
    agg = aggregate(batch, params_for(batch, "trimmed-mean", batch_size=1, f=10))
    assert np.array_equal(agg.gradient, np.median(np.array(xs(batch)), axis=0))


@pytest.mark.parametrize("seed", range(8))
def test_krum_and_multi_krum_match_the_slow_definition(seed):
    batch = scenario(seed)
    x = xs(batch)
    f = batch.n // 4
    scores = ref_krum_scores(x, f)
    order = sorted(range(batch.n), key=lambda i: (scores[i], batch.keys[i]))
    krum = aggregate(batch, params_for(batch, "krum", f=f))
    assert krum.selection == (order[0],)
    np.testing.assert_allclose(krum.gradient, np.array(x[order[0]]) / 3, rtol=1e-12)
    m = batch.n - f
    multi = aggregate(batch, params_for(batch, "multi-krum", f=f))
    assert multi.selection == tuple(sorted(order[:m]))
    np.testing.assert_allclose(multi.gradient, np.array(ref_mean(x, multi.selection)) / 3, rtol=1e-11)
    # Byzantine vectors (the last quarter, norm ~50 sqrt(d)) are never picked
    honest = batch.n - batch.n // 4
    assert all(i < honest for i in multi.selection)


def test_multi_krum_m_option():
    batch = scenario(4)
    agg = aggregate(batch, params_for(batch, "multi-krum", f=2, m=3))
    assert len(agg.selection) == 3


def test_krum_on_a_hand_computed_example():
    # Four points near the origin and one far away: with f = 1 each point's score
    # sums its n - f - 2 = 2 nearest squared distances. For (0,0): 1 + 1 = 2, the
    # unique minimum, so Krum returns it.
    pts = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, -0.5), (40.0, 40.0)]
    vectors = [np.array(p) + np.array([0.0, 0.0]) for p in pts]
    # the zero vector cannot be a message; shift everything by (5, 5) (distances unchanged)
    vectors = [v + 5.0 for v in vectors]
    batch = make_batch(vectors)
    agg = aggregate(batch, params_for(batch, "krum", batch_size=1, f=1))
    np.testing.assert_allclose(agg.gradient, [5.0, 5.0], rtol=1e-6)


def ref_bulyan(x, keys, f):
    n = len(x)
    remaining = list(range(n))
    chosen = []
    for _ in range(n - 2 * f):
        sub = [x[i] for i in remaining]
        scores = ref_krum_scores(sub, f)
        best = min(range(len(remaining)), key=lambda j: (scores[j], keys[remaining[j]]))
        chosen.append(remaining.pop(best))
    theta = len(chosen)
    beta = theta - 2 * f
    out = []
    for i in range(len(x[0])):
        col = sorted(x[k][i] for k in chosen)
        med = col[theta // 2] if theta % 2 else (col[theta // 2 - 1] + col[theta // 2]) / 2
        nearest = sorted(range(theta), key=lambda j: (abs(col[j] - med), j))[:beta]
        out.append(sum(col[j] for j in sorted(nearest)) / beta)
    return tuple(sorted(chosen)), out


@pytest.mark.parametrize("seed", range(6))
def test_bulyan_matches_the_slow_definition(seed):
    batch = scenario(seed, n=[11, 15, 19, 12, 23, 16][seed])
    f = (batch.n - 3) // 4
    sel, want = ref_bulyan(xs(batch), batch.keys, f)
    agg = aggregate(batch, params_for(batch, "bulyan", batch_size=2, f=f))
    assert agg.selection == sel
    np.testing.assert_allclose(agg.gradient, np.array(want) / 2, rtol=1e-12, atol=1e-13)


def test_bulyan_clamps_f():
    batch = scenario(1, n=9)
    a = aggregate(batch, params_for(batch, "bulyan", f=5))
    b = aggregate(batch, params_for(batch, "bulyan", f=(9 - 3) // 4))
    assert a.selection == b.selection and np.array_equal(a.gradient, b.gradient)


def ref_centered_clipping(x, tau, iterations):
    x = np.array(x)
    v = np.zeros(x.shape[1])
    for _ in range(iterations):
        diffs = x - v
        norms = np.linalg.norm(diffs, axis=1)
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-300))
        v = v + (diffs * scale[:, None]).mean(axis=0)
    return v


@pytest.mark.parametrize("seed,tau,iterations", [(0, 1.0, 1), (1, 5.0, 3), (2, 0.5, 5), (3, 100.0, 2)])
def test_centered_clipping_matches_the_reference(seed, tau, iterations):
    batch = scenario(seed)
    agg = aggregate(batch, params_for(batch, "centered-clipping", batch_size=2, tau=tau, iterations=iterations))
    want = ref_centered_clipping(xs(batch), tau, iterations) / 2
    np.testing.assert_allclose(agg.gradient, want, rtol=1e-10, atol=1e-12)


def test_centered_clipping_bounds_each_messages_pull():
    rng = np.random.default_rng(9)
    honest = [np.ones(4) + 0.1 * rng.normal(size=4) for _ in range(9)]
    batch = make_batch(honest + [np.full(4, 1e9)])
    agg = aggregate(batch, params_for(batch, "centered-clipping", batch_size=1, tau=1.0, iterations=10))
    assert np.linalg.norm(agg.gradient - np.ones(4)) < 0.5


def test_centered_clipping_without_clipping_defaults_tau_to_ten_per_example():
    from learningchain.protocol.aggregation import CENTERED_CLIPPING_TAU

    batch = scenario(4)
    params = params_for(batch, "centered-clipping", batch_size=2).replace(clip_mode="none", mechanism="none")
    agg = aggregate(batch, params)  # refused before: no norm bound without clipping
    want = ref_centered_clipping(xs(batch), CENTERED_CLIPPING_TAU * 2, 3) / 2
    np.testing.assert_allclose(agg.gradient, want, rtol=1e-10, atol=1e-12)
    explicit = aggregate(batch, params_for(batch, "centered-clipping", batch_size=2, tau=20.0)
                         .replace(clip_mode="none", mechanism="none"))
    assert np.array_equal(agg.gradient, explicit.gradient)
    # with clipping the default stays the honest norm bound (existing chains unchanged)
    clipped = params_for(batch, "centered-clipping", batch_size=2)
    bound = norm_bound(clipped, batch.round + 1)
    np.testing.assert_allclose(aggregate(batch, clipped).gradient, ref_centered_clipping(xs(batch), bound, 3) / 2,
                               rtol=1e-10, atol=1e-12)


def test_l_nearest_bounded_caps_norms_and_keeps_the_selection():
    rng = np.random.default_rng(2)
    honest = [np.ones(6) + 0.2 * rng.normal(size=6) for _ in range(10)]
    inflated = [1e6 * (np.ones(6) + 0.01 * rng.normal(size=6)) for _ in range(3)]
    batch = make_batch(honest + inflated, rng=rng)
    plain = aggregate(batch, params_for(batch, "l-nearest", batch_size=1, l=7))
    bounded = aggregate(batch, params_for(batch, "l-nearest-bounded", batch_size=1, l=7, bound=5.0))
    assert plain.selection == bounded.selection
    assert any(i >= 10 for i in plain.selection)  # the inflated vectors look honest to Eq. 15
    capped = np.minimum(batch.norms, 5.0)
    want = sum(capped[k] * dequantize(batch.q[k], BITS) for k in bounded.selection) / len(bounded.selection)
    np.testing.assert_allclose(bounded.gradient, want, rtol=1e-12)
    assert np.linalg.norm(bounded.gradient) <= 5.0 * (1 + 1e-9)
    assert np.linalg.norm(plain.gradient) > 1e5


# -- the norm bound ------------------------------------------------------------------


@pytest.mark.parametrize("d,eps,clip,m", [(11, 0.1, 1.0, 1000), (31, 0.3, 2.0, 40), (7850, 0.5, 1.0, 80)])
def test_norm_bound_is_above_the_exact_noise_quantile(d, eps, clip, m):
    params = small_params(dim=d, model={"kind": "logistic", "inputs": d - 1, "classes": 2}, mechanism="l2-laplace",
                          epsilon=eps, clip=clip, batch_size=m, aggregator="l-nearest-bounded")
    tail = 20.0
    bound = norm_bound(params, 1, tail=tail)
    theta = 2 * clip / eps
    quantile = stats.gamma(a=d, scale=theta).isf(math.exp(-tail))
    assert bound >= m * clip + quantile
    assert bound <= m * clip + 1.5 * quantile + 3 * theta  # and not absurdly loose
    # the decay schedule's noise grows as t(t+1)
    decay = params.replace(schedule="decay")
    assert norm_bound(decay, 3) - m * clip == pytest.approx((norm_bound(decay, 1) - m * clip) * 6, rel=1e-12)


def test_norm_bound_for_the_gaussian_mechanism_uses_the_noise_multiplier():
    params = small_params(dim=50, model={"kind": "logistic", "inputs": 49, "classes": 2}, mechanism="gaussian",
                          epsilon=1.0, delta=1e-5, noise_multiplier=1.5, clip=1.0, batch_size=10,
                          aggregator="l-nearest-bounded")
    sigma = 1.5 * 2.0
    quantile = math.sqrt(stats.chi2(df=50).isf(math.exp(-20.0))) * sigma
    assert norm_bound(params, 1) >= 10 + quantile
    with pytest.raises(ConfigError, match="noise_multiplier"):
        small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5, aggregator="l-nearest-bounded")


def test_honest_norms_are_never_capped_in_simulation():
    from learningchain.privacy import L2LaplaceMechanism

    d, eps, m = 20, 0.2, 50
    params = small_params(dim=d, model={"kind": "logistic", "inputs": d - 1, "classes": 2}, mechanism="l2-laplace",
                          epsilon=eps, clip=1.0, batch_size=m, aggregator="l-nearest-bounded")
    rng = np.random.default_rng(0)
    mech = L2LaplaceMechanism(epsilon=eps, sensitivity=2.0)
    worst = max(np.linalg.norm(np.full(d, m / math.sqrt(d)) + mech.sample(d, rng)) for _ in range(5000))
    assert worst < norm_bound(params, 1)


# -- exactness helpers ---------------------------------------------------------------


def old_weighted_unit_sum(batch, indices, weights=None):
    """The weighted sum as first written: dequantize, multiply, add, row by row."""
    acc = np.zeros(batch.dim, dtype=np.float64)
    for j, i in enumerate(indices):
        unit = dequantize(batch.q[i], batch.bits)
        coeff = float(batch.norms[i]) if weights is None else float(batch.norms[i]) * float(weights[j])
        acc = acc + coeff * unit
    return acc


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 40), st.integers(0, 2**32 - 1), st.booleans())
def test_weighted_unit_sum_is_bitwise_the_original(n, d, seed, weighted):
    rng = np.random.default_rng(seed)
    vecs = [rng.normal(size=d) * 10.0 ** rng.integers(-150, 150) for _ in range(n)]
    batch = make_batch([v if np.linalg.norm(v) > 0 else np.ones(d) for v in vecs], rng=rng)
    idx = list(rng.permutation(n)[: max(1, n // 2)])
    weights = rng.normal(size=len(idx)) if weighted else None
    assert weighted_unit_sum(batch, idx, weights).tobytes() == old_weighted_unit_sum(batch, idx, weights).tobytes()


def test_weighted_unit_sum_with_tiny_norms_stays_the_original():
    q = np.array([[2**BITS, 0], [0, 2**BITS]], dtype=np.int32)
    batch = Batch(q, np.array([5e-324, 3e-310]), (b"\x01" * 32, b"\x02" * 32), BITS)
    assert weighted_unit_sum(batch, [0, 1]).tobytes() == old_weighted_unit_sum(batch, [0, 1]).tobytes()


def fraction_ranking(batch):
    q = batch.q.astype(object)
    v = [sum(q[k][i] for k in range(batch.n)) for i in range(batch.dim)]
    keys = []
    for k in range(batch.n):
        a = sum(int(x) * int(y) for x, y in zip(q[k], v))
        n2 = sum(int(x) * int(x) for x in q[k])
        keys.append(Fraction(a * abs(a), n2) if n2 else Fraction(0))
    return sorted(range(batch.n), key=lambda i: (-keys[i], batch.keys[i]))


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 20), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_cosine_ranking_is_exact_even_for_near_ties(n, d, seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=d)
    vecs = []
    for _ in range(n):
        if vecs and rng.random() < 0.4:
            vecs.append(vecs[int(rng.integers(len(vecs)))] * (1 + rng.random()))  # same direction
        else:
            vecs.append(base + rng.normal(size=d) * float(rng.choice([1e-7, 1e-4, 1.0])))
    batch = make_batch(vecs, rng=rng)
    q = batch.q.copy()
    for k in range(n):  # one-unit nudges make exact ties and near ties
        if rng.random() < 0.3:
            q[k, int(rng.integers(d))] += int(rng.integers(-1, 2))
    batch = Batch(q, batch.norms, batch.keys, BITS)
    assert compute_cosine_ranking(batch) == fraction_ranking(batch)


def test_squared_distances_are_exactly_symmetric_and_close_to_direct():
    batch = scenario(5, n=15, d=9)
    dist = compute_squared_distances(batch)
    assert np.array_equal(dist, dist.T)
    np.testing.assert_allclose(dist, np.array(ref_distances(xs(batch))), rtol=1e-9, atol=1e-9)


def test_fixed_order_row_sums_is_the_pairwise_tree():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 13)) * 10.0 ** rng.integers(-5, 5, size=(5, 13))

    def tree(row):
        row = list(row) + [0.0] * (16 - len(row))
        while len(row) > 1:
            half = len(row) // 2
            row = [row[i] + row[i + half] for i in range(half)]
        return row[0]

    got = fixed_order_row_sums(a)
    assert [float(x) for x in got] == [tree(r) for r in a]
    np.testing.assert_allclose(got, [math.fsum(r) for r in a], rtol=1e-12)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_picks_the_same_messages_whatever_the_row_order(rule):
    batch = scenario(11, n=14, d=6)
    perm = np.random.default_rng(3).permutation(batch.n)
    shuffled = Batch(batch.q[perm], batch.norms[perm], tuple(batch.keys[i] for i in perm), BITS)
    a = aggregate(batch, params_for(batch, rule))
    b = aggregate(shuffled, params_for(shuffled, rule))
    assert {batch.keys[i] for i in a.selection} == {shuffled.keys[i] for i in b.selection}
    if rule in ("median", "krum", "l-nearest", "l-nearest-bounded"):
        # order statistics and single picks do not depend on the order of summation
        np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-12)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_handles_one_and_two_messages(rule):
    for n in (1, 2):
        batch = make_batch([np.array([1.0, 2.0, 3.0]) * (k + 1) for k in range(n)])
        agg = aggregate(batch, params_for(batch, rule, batch_size=1))
        assert agg.selection and all(0 <= i < n for i in agg.selection)
        assert np.all(np.isfinite(agg.gradient))


@pytest.mark.parametrize("rule,options,match", [
    ("krum", {"f": -1}, ">= 0"),
    ("multi-krum", {"m": 0}, ">= 1"),
    ("centered-clipping", {"tau": 0.0}, "> 0"),
    ("centered-clipping", {"iterations": 1.5}, "must be int"),
    ("l-nearest-bounded", {"bound": "big"}, "must be float"),
    ("median", {"f": 1}, "has no option 'f'"),
])
def test_bad_rule_options_are_refused(rule, options, match):
    with pytest.raises(ConfigError, match=match):
        small_params(aggregator=rule, aggregator_options=options)


def test_float_options_accept_integers():
    assert small_params(aggregator="centered-clipping", aggregator_options={"tau": 3}).aggregator_options["tau"] == 3


def test_l_nearest_selection_unchanged_by_the_fast_ranking():
    batch = scenario(8, n=40, d=30)
    ranking = fraction_ranking(batch)
    assert compute_l_nearest(batch, 20) == tuple(sorted(ranking[:20]))


def test_batches_carry_the_exact_squared_norms_of_their_messages():
    from learningchain.protocol.message import validate_message
    from learningchain.protocol.transition import make_batch

    from ..helpers import genesis_for, honest_vectors, make_keys, message_for

    params = small_params(dim=9, holders=8, model={"kind": "logistic", "inputs": 8, "classes": 2})
    genesis = genesis_for(params)
    rng = np.random.default_rng(6)
    msgs = [message_for(k, params, genesis, v) for k, v in zip(make_keys(8), honest_vectors(params, 8, rng))]
    exact = [sum(int(x) ** 2 for x in m.q) for m in msgs]
    before = make_batch(msgs, params)
    for m in msgs:
        validate_message(m, params, round=0, base=genesis.hash)
    batch = make_batch(msgs, params)
    # validation only reads the message: the batch is the same before and after
    assert before.sq_norms.tolist() == batch.sq_norms.tolist() == exact
    assert [m.sq_norm for m in msgs] == exact
    cold = Batch(batch.q, batch.norms, batch.keys, batch.bits)
    assert compute_cosine_ranking(batch) == compute_cosine_ranking(cold)


def test_bounded_l_nearest_needs_clipping_or_an_explicit_bound():
    from learningchain.errors import ConfigError

    from ..helpers import small_params

    with pytest.raises(ConfigError, match="without clipping"):
        small_params(aggregator="l-nearest-bounded", clip_mode="none")
    small_params(aggregator="l-nearest-bounded", clip_mode="none", aggregator_options={"bound": 5.0})
