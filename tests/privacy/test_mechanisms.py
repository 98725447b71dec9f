"""The paper's noise (Eq. 10) against its distribution, and the budget schedules."""

import math

import numpy as np
import pytest
from scipy import stats

from learningchain.errors import ConfigError
from learningchain.privacy import L2LaplaceMechanism, epsilon_for_round, total_epsilon


@pytest.mark.parametrize("d,eps,clip", [(1, 0.5, 1.0), (10, 0.1, 1.0), (31, 0.3, 2.0)])
def test_radius_follows_gamma_d_over_beta(d, eps, clip):
    mech = L2LaplaceMechanism(epsilon=eps, sensitivity=2 * clip)
    rng = np.random.default_rng(d)
    radii = np.array([np.linalg.norm(mech.sample(d, rng)) for _ in range(4000)])
    beta = eps / (2 * clip)
    ks = stats.kstest(radii, stats.gamma(a=d, scale=1 / beta).cdf)
    assert ks.pvalue > 1e-3
    # and a distribution that is wrong by 10% in scale is rejected by the same test
    wrong = stats.kstest(radii, stats.gamma(a=d, scale=1.1 / beta).cdf)
    assert wrong.pvalue < 1e-3


def test_direction_is_uniform_on_the_sphere():
    d = 10
    mech = L2LaplaceMechanism(epsilon=1.0, sensitivity=2.0)
    rng = np.random.default_rng(7)
    units = np.array([v / np.linalg.norm(v) for v in (mech.sample(d, rng) for _ in range(5000))])
    # Each coordinate u_1 of a uniform unit vector has (u_1 + 1) / 2 ~ Beta((d-1)/2, (d-1)/2).
    for axis in (0, 5):
        ks = stats.kstest((units[:, axis] + 1) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf)
        assert ks.pvalue > 1e-3
    # no preferred direction
    assert np.linalg.norm(units.mean(0)) < 4 / math.sqrt(5000)


def test_density_ratio_between_neighbours_is_bounded_by_e_to_the_epsilon():
    # mu(a) / mu(a + delta) = exp(beta (||a + delta|| - ||a||)) <= exp(beta ||delta||) <= exp(eps)
    eps, clip = 0.3, 1.0
    beta = eps / (2 * clip)
    rng = np.random.default_rng(3)
    for _ in range(1000):
        a = rng.normal(size=5) * 10
        delta = rng.normal(size=5)
        delta *= rng.uniform(0, 2 * clip) / np.linalg.norm(delta)
        log_ratio = beta * (np.linalg.norm(a + delta) - np.linalg.norm(a))
        assert log_ratio <= eps + 1e-12


def test_schedules_match_the_paper():
    assert epsilon_for_round("constant", 0.1, 7, 100) == 0.1
    assert epsilon_for_round("uniform", 0.1, 7, 100) == pytest.approx(0.001)
    assert epsilon_for_round("decay", 0.1, 3, 100) == pytest.approx(0.1 / 12)
    assert total_epsilon("uniform", 0.1, 100, 100) == pytest.approx(0.1)
    assert total_epsilon("decay", 0.1, 100, 100) == pytest.approx(0.1 * 100 / 101)
    assert total_epsilon("constant", 0.1, 100, 100) == pytest.approx(10.0)
    with pytest.raises(ConfigError):
        epsilon_for_round("sometimes", 0.1, 1, 1)


def test_bad_mechanism_settings_are_refused():
    for eps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            L2LaplaceMechanism(epsilon=eps, sensitivity=1.0)
