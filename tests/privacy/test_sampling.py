"""How a holder samples its batch, and what the accountant assumes of it: the
Poisson sampler against its law, the amplified epsilon of the pure mechanism
against its formula, and a Poisson run's RDP figure against dp-accounting."""

import math

import numpy as np
import pytest
from scipy import stats

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.holder import DataHolder
from learningchain.privacy.accounting import amplified_epsilon, privacy_report, rdp_epsilon, tight_epsilon

from ..helpers import small_params


def holder(n=40, m=10, sampling="poisson", seed=0):
    params = small_params(batch_size=m)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = rng.integers(0, 2, size=n)
    return DataHolder(0, x, y, params, rng=np.random.default_rng([seed, 1]), sampling=sampling)


def test_poisson_batches_follow_the_binomial_and_each_example_has_rate_q():
    n, m, draws = 40, 10, 4000
    h = holder(n, m)
    q = m / n
    assert h.sampling_rate == q
    sizes = np.empty(draws, dtype=int)
    hits = np.zeros(n)
    for i in range(draws):
        idx = h.batch_indices()
        assert len(set(idx.tolist())) == len(idx) and np.all((0 <= idx) & (idx < n))
        sizes[i] = len(idx)
        hits[idx] += 1
    # batch sizes: Binomial(n, q), chi-square over binned counts
    edges = [0, 6, 8, 9, 10, 11, 12, 14, n + 1]
    observed = np.histogram(sizes, bins=edges)[0]
    cdf = stats.binom.cdf(np.asarray(edges) - 1, n, q)
    expected = draws * np.diff(cdf)
    assert expected.min() > 50
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # every example independently in a batch with probability q: binomial counts
    assert stats.chisquare(hits, np.full(n, hits.sum() / n)).pvalue > 1e-3
    assert abs(hits.mean() / draws - q) < 4 * math.sqrt(q * (1 - q) / (draws * n))
    for k in (0, n - 1):
        assert stats.binomtest(int(hits[k]), draws, q).pvalue > 1e-4
    # two examples are included independently (pairs as often as q^2)
    both = 0
    h2 = holder(n, m, seed=1)
    for _ in range(draws):
        idx = set(h2.batch_indices().tolist())
        both += (0 in idx) and (1 in idx)
    assert stats.binomtest(both, draws, q * q).pvalue > 1e-4


def test_fixed_sampling_keeps_m_without_replacement_and_full_batches_are_untouched():
    h = holder(40, 10, sampling="fixed")
    for _ in range(20):
        idx = h.batch_indices()
        assert len(idx) == 10 and len(set(idx.tolist())) == 10
    # the default draws exactly what it always drew (rng.choice without replacement)
    rng = np.random.default_rng([0, 1])
    rng.bytes(32)  # the holder's key
    h = holder(40, 10, sampling="fixed")
    assert h.batch_indices().tolist() == rng.choice(40, size=10, replace=False).tolist()
    assert holder(40, 40).batch_indices() is None and holder(40, 50, sampling="poisson").batch_indices() is None
    x, _ = holder(40, 40).batch()
    assert x.shape[0] == 40


def test_unknown_sampling_is_refused():
    with pytest.raises(ConfigError, match="sampling"):
        holder(sampling="bernoulli")
    with pytest.raises(ConfigError, match="sampling must be fixed .* or poisson"):
        TrainConfig(sampling="uniform")


@pytest.mark.parametrize("eps,q", [(0.1, 0.25), (0.3, 0.5), (1.0, 0.01), (2.0, 1.0), (0.5, 0.0)])
def test_amplified_epsilon_is_the_subsampling_bound(eps, q):
    want = math.log(1 + q * (math.exp(eps) - 1))
    assert amplified_epsilon(eps, q) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert amplified_epsilon(eps, q) <= eps


def test_a_poisson_l2_laplace_report_gives_the_amplified_epsilon_beside_the_plain_one():
    params = small_params(mechanism="l2-laplace", epsilon=0.3, batch_size=10, rounds=50)
    report = privacy_report(params, 50, holder_examples=[40, 50], delta=1e-5, sampling="poisson")
    assert report["sampling"] == "poisson"
    assert report["epsilon_total"] == pytest.approx(15.0)  # the unamplified figure stays the headline
    amp = report["amplified"]
    q = 10 / 40  # the holder with the fewest examples
    per = math.log(1 + q * (math.exp(0.3) - 1))
    assert amp["sampling_rate"] == q and amp["epsilon_per_round"] == pytest.approx(per, rel=1e-12)
    assert report["epsilon_total_amplified"] == pytest.approx(50 * per, rel=1e-12)
    assert report["epsilon_total_tight_amplified"] == pytest.approx(tight_epsilon([per] * 50, 1e-5))
    assert report["epsilon_total_tight_amplified"] < report["epsilon_total_tight"]
    assert [h["sampling_rate"] for h in amp["per_holder"]] == [0.25, 0.2]
    # fixed sampling claims no amplification for the pure mechanism
    fixed = privacy_report(params, 50, holder_examples=[40, 50], delta=1e-5)
    assert fixed["sampling"] == "fixed" and "amplified" not in fixed


def _poisson_rdp(z_relative_to_g, q, rounds, delta):
    import dp_accounting
    from dp_accounting.privacy_accountant import NeighboringRelation
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z_relative_to_g)), rounds)
    return acc.get_epsilon(delta)


def test_poisson_rdp_is_dp_accountings_poisson_subsampled_gaussian():
    # sigma = z * 2G; add-or-remove-one sensitivity of the per-example clipped sum is G
    got = rdp_epsilon(noise_multipliers=1.0, rounds=100, examples=600, batch_size=60, delta=1e-5,
                      sampling="poisson")
    assert got == pytest.approx(_poisson_rdp(2.0, 0.1, 100, 1e-5), rel=1e-12)
    total = rdp_epsilon(noise_multipliers=1.0, rounds=100, examples=600, batch_size=60, delta=1e-5,
                        sampling="poisson", clip_mode="total")
    assert total == pytest.approx(_poisson_rdp(1.0, 0.1, 100, 1e-5), rel=1e-12)
    assert got < total


def test_a_gaussian_poisson_run_reports_dp_accountings_epsilon(tmp_path):
    from learningchain.experiments.train import run_training

    s = run_training(TrainConfig(dataset="breast-cancer", rounds=2, holders=4, mechanism="gaussian", epsilon=2.0,
                                 delta=1e-5, batch_size=21, sampling="poisson", difficulty=0, out=str(tmp_path),
                                 progress=False))
    privacy = s["privacy"]
    assert privacy["sampling"] == "poisson"
    assert privacy["rdp"]["neighbouring"] == "add-or-remove-one" and privacy["rdp"]["sampling"] == "poisson"
    z = privacy["rdp"]["noise_multiplier"]
    for row in privacy["rdp"]["per_holder"]:
        want = _poisson_rdp(2.0 * z, 21 / row["examples"], 2, 1e-5)
        assert row["epsilon"] == pytest.approx(want, rel=1e-9)
    # calibrated on the Poisson accountant: the smallest holder lands just within (2, 1e-5)
    assert 1.99 < s["epsilon_total"] <= 2.0
