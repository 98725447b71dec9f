"""The OS-CSPRNG generator: its noise has the mechanisms' laws (KS tests), it
cannot be reproduced from a seed, and runs and nodes say which generator ran."""

import numpy as np
import pytest
from scipy import stats

from learningchain.config import TrainConfig
from learningchain.holder import DataHolder
from learningchain.privacy import GaussianMechanism, L2LaplaceMechanism, uniform_direction
from learningchain.privacy.secure import EXACT_GAMMA_SHAPE, GENERATOR_SECURE, GENERATOR_SEEDED, SecureRandom

from ..helpers import small_params


def test_uniforms_and_normals_have_their_laws():
    rng = SecureRandom()
    u = rng.random(20000)
    assert u.shape == (20000,) and u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = rng.standard_normal(20001)
    assert z.shape == (20001,)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    g = GaussianMechanism(sigma=3.0).sample(5000, rng)
    assert stats.kstest(g / 3.0, "norm").pvalue > 1e-3
    assert isinstance(rng.standard_normal(), float)


@pytest.mark.parametrize("shape", [10, EXACT_GAMMA_SHAPE + 904])  # sum of exponentials; inverse CDF
def test_the_laplace_radius_is_gamma_and_the_direction_uniform(shape):
    rng = SecureRandom()
    mech = L2LaplaceMechanism(epsilon=0.5, sensitivity=2.0)
    r = mech.sample_radius(shape, rng, size=2000)
    assert stats.kstest(r, stats.gamma(a=shape, scale=1.0 / mech.beta).cdf).pvalue > 1e-3
    # direction: uniform on the sphere; its first coordinate has the law of
    # sqrt(d) * x1 -> N(0, 1); for d = 3 it is exactly uniform on [-1, 1] (Archimedes)
    first = np.array([uniform_direction(3, rng)[0] for _ in range(3000)])
    assert stats.kstest(first, stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
    v = mech.sample(7, rng)
    assert v.shape == (7,) and np.all(np.isfinite(v))


def test_secure_noise_is_not_reproducible_from_a_seed():
    params = small_params(mechanism="l2-laplace", epsilon=0.3, clip=1.0)
    x = np.ones((8, 4))
    y = np.zeros(8, dtype=int)
    draws = []
    for _ in range(2):
        h = DataHolder(0, x, y, params, rng=SecureRandom())  # the same data, the same "seed" (none can be given)
        draws.append((h.key.address, L2LaplaceMechanism(epsilon=0.3, sensitivity=2.0).sample(5, h.rng)))
    assert draws[0][0] != draws[1][0]
    assert not np.array_equal(draws[0][1], draws[1][1])
    # a seeded numpy generator does repeat itself: what secure_rng avoids
    seeded = [np.random.default_rng(5).standard_normal(5) for _ in range(2)]
    assert np.array_equal(*seeded)


def test_batches_and_keys_come_from_the_os():
    rng = SecureRandom()
    pick = rng.choice(50, size=10, replace=False)
    assert len(set(pick.tolist())) == 10 and pick.min() >= 0 and pick.max() < 50
    assert len(rng.bytes(32)) == 32 and rng.bytes(32) != rng.bytes(32)
    counts = np.zeros(5)
    for _ in range(2000):
        counts[rng.choice(5, size=2, replace=False)] += 1
    assert stats.chisquare(counts).pvalue > 1e-3
    assert rng.permutation(4).shape == (4,)  # anything else: a Generator seeded from the OS


def test_a_train_run_says_which_generator_ran(tmp_path):
    from learningchain.experiments.train import run_training
    from learningchain.privacy.secure import generator_of

    kw = dict(dataset="synthetic", holders=4, rounds=2, difficulty=0, progress=False, epsilon=0.5)
    seeded = [run_training(TrainConfig(out=str(tmp_path / f"s{i}"), **kw)) for i in range(2)]
    assert seeded[0]["privacy"]["generator"] == GENERATOR_SEEDED
    assert seeded[0]["head_hash"] == seeded[1]["head_hash"]
    secure = [run_training(TrainConfig(out=str(tmp_path / f"c{i}"), secure_rng=True, **kw)) for i in range(2)]
    assert secure[0]["privacy"]["generator"] == GENERATOR_SECURE
    assert secure[0]["head_hash"] != secure[1]["head_hash"] != seeded[0]["head_hash"]
    # node processes default to the CSPRNG; secure_rng = false keeps the OS-seeded PCG64
    assert generator_of(TrainConfig().secure_rng, in_process=False) == GENERATOR_SECURE
    assert "not a CSPRNG" in generator_of(TrainConfig(secure_rng=False).secure_rng, in_process=False)
