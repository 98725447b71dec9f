"""The Gaussian mechanism's RDP accountant: pinned outputs, an independent
closed form for full batches, and the (eps, delta) a run reports."""

import math

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.holder import mechanism_for_round
from learningchain.privacy.accounting import calibrate_noise_multiplier, privacy_report, rdp_epsilon

from ..helpers import small_params


def closed_form_full_batch(z, rounds, delta):
    """Gaussian mechanism without sampling: RDP(alpha) = T alpha / (2 z^2)
    (Mironov 2017, Prop. 7), converted with Canonne-Kamath-Steinke 2020, Prop. 12:
    eps = min_alpha RDP + log(1 - 1/alpha) - log(delta alpha) / (alpha - 1)."""
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
    return max(0.0, min(rounds * a / (2 * z * z) + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
                        for a in orders if a > 1.01))


@pytest.mark.parametrize("z,rounds,delta", [(2.0, 100, 1e-5), (1.0, 10, 1e-6), (5.0, 300, 1e-5)])
def test_full_batch_matches_the_closed_form(z, rounds, delta):
    got = rdp_epsilon(noise_multipliers=z, rounds=rounds, examples=60, batch_size=60, delta=delta)
    assert got == pytest.approx(closed_form_full_batch(z, rounds, delta), rel=1e-9)


def test_pinned_subsampled_setting():
    # Holder with 600 examples, batches of 60 drawn without replacement, z = 2,
    # 100 rounds, delta = 1e-5 (Wang-Balle-Kasiviswanathan bound, dp-accounting 0.6.0).
    eps = rdp_epsilon(noise_multipliers=2.0, rounds=100, examples=600, batch_size=60, delta=1e-5)
    assert eps == pytest.approx(5.3790097, rel=1e-6)
    # sampling helps: the same noise on full batches costs far more
    assert eps < rdp_epsilon(noise_multipliers=2.0, rounds=100, examples=60, batch_size=60, delta=1e-5) / 5


def test_epsilon_falls_with_more_noise_and_rises_with_more_rounds():
    kw = dict(examples=500, batch_size=50, delta=1e-5)
    eps = [rdp_epsilon(noise_multipliers=z, rounds=50, **kw) for z in (0.8, 1.2, 2.0, 4.0)]
    assert eps == sorted(eps, reverse=True)
    eps = [rdp_epsilon(noise_multipliers=1.5, rounds=t, **kw) for t in (1, 10, 100)]
    assert eps == sorted(eps)


def test_calibration_hits_the_target_from_the_private_side():
    kw = dict(delta=1e-5, rounds=50, examples=400, batch_size=40)
    z = calibrate_noise_multiplier(epsilon=2.0, **kw)
    assert rdp_epsilon(noise_multipliers=z, **kw) <= 2.0
    assert rdp_epsilon(noise_multipliers=z * (1 - 5e-4), **kw) > 2.0 * (1 - 1e-3)


def test_per_round_multipliers_compose():
    kw = dict(examples=100, batch_size=100, delta=1e-5)
    mixed = rdp_epsilon(noise_multipliers=[1.0, 2.0, 2.0], rounds=3, **kw)
    # RDP adds: 1/(2*1) + 2/(2*4) = 0.75 alpha per round-set, i.e. 1.5 rounds at z = 1
    assert mixed == pytest.approx(closed_form_full_batch(1.0, 1.5, 1e-5), rel=1e-9)


def test_bad_accountant_inputs_are_refused():
    with pytest.raises(ConfigError, match="delta"):
        rdp_epsilon(noise_multipliers=1.0, rounds=3, examples=10, batch_size=5, delta=0.0)
    with pytest.raises(ConfigError, match="noise multiplier"):
        rdp_epsilon(noise_multipliers=0.0, rounds=3, examples=10, batch_size=5, delta=1e-5)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        TrainConfig(mechanism="l2-laplace", noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        small_params(mechanism="l2-laplace", epsilon=1.0, noise_multiplier=1.0)


def test_the_mechanism_uses_the_chains_noise_multiplier():
    params = small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5, noise_multiplier=1.7, clip=0.5)
    mech = mechanism_for_round(params, 7)
    assert mech.sigma == pytest.approx(1.7 * 2 * 0.5)
    rng = np.random.default_rng(0)
    sample = np.concatenate([mech.sample(params.dim, rng) for _ in range(4000)])
    assert sample.std() == pytest.approx(1.7, rel=0.03)


def test_noise_multiplier_is_left_out_of_old_genesis_encodings():
    assert b"noise_multiplier" not in small_params().encode()
    assert b"noise_multiplier" in small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5,
                                                noise_multiplier=1.5).encode()


def test_report_gives_each_holder_its_epsilon():
    params = small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5, noise_multiplier=1.5, batch_size=20)
    report = privacy_report(params, 30, holder_examples=[40, 41, 40])
    per = report["rdp"]["per_holder"]
    assert [p["examples"] for p in per] == [40, 41, 40]
    want40 = rdp_epsilon(noise_multipliers=1.5, rounds=30, examples=40, batch_size=20, delta=1e-5)
    want41 = rdp_epsilon(noise_multipliers=1.5, rounds=30, examples=41, batch_size=20, delta=1e-5)
    assert per[0]["epsilon"] == want40 and per[1]["epsilon"] == want41
    assert report["epsilon_total"] == max(want40, want41) == want40
    assert report["delta_total"] == 1e-5


def test_a_gaussian_run_reports_epsilon_and_delta_from_the_accountant(tmp_path):
    from learningchain.experiments.train import run_training

    s = run_training(TrainConfig(dataset="breast-cancer", rounds=4, mechanism="gaussian", epsilon=2.0, delta=1e-5,
                                 batch_size=21, out=str(tmp_path), progress=False))
    privacy = s["privacy"]
    assert privacy["composition"] == "rdp"
    z = privacy["rdp"]["noise_multiplier"]
    sizes = sorted({p["examples"] for p in privacy["rdp"]["per_holder"]})
    # calibrated so that the smallest holder spends (2.0, 1e-5) over the planned 4 rounds
    worst = rdp_epsilon(noise_multipliers=z, rounds=4, examples=sizes[0], batch_size=21, delta=1e-5)
    assert s["epsilon_total"] == pytest.approx(worst) and worst <= 2.0 and worst > 1.99
    assert s["delta_total"] == 1e-5
