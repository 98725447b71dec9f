"""Byzantine holders: each attack against its definition, computed independently."""

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from scipy import stats

from learningchain.attacks.holders import (
    HOLDER_ATTACKS,
    AttackContext,
    alie_z,
    flipped_labels,
    make_holder_attack,
)
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments.train import run_training
from learningchain.holder import DataHolder
from learningchain.node import SQLiteStore

from ..helpers import genesis_for, small_params


def context(rng, *, own=None, honest=None, f=2, n=10, holder=None, base=None, dim=5):
    own = np.asarray(own if own is not None else rng.normal(size=dim))
    return AttackContext(round=0, dim=dim, rng=rng, own_gradient=lambda: own, honest=honest, byzantine_count=f,
                         holders=n, holder=holder, base=base)


def test_every_issue_attack_is_registered():
    assert set(HOLDER_ATTACKS) >= {"gaussian", "sign-flip", "opposite", "alie", "ipm", "label-flip",
                                   "norm-inflation", "sybil"}


def test_unknown_attack_and_bad_options_are_refused():
    with pytest.raises(ConfigError, match="known: .*sign-flip"):
        make_holder_attack("teleport")
    with pytest.raises(ConfigError, match="bad options"):
        make_holder_attack("sign-flip", strength=3)
    with pytest.raises(ConfigError, match="scale > 0"):
        make_holder_attack("opposite", scale=-1)
    with pytest.raises(ConfigError, match="tilt"):
        make_holder_attack("norm-inflation", tilt=95)
    with pytest.raises(ConfigError, match="identities"):
        make_holder_attack("sybil", identities=0)


def test_sign_flip(rng):
    own = rng.normal(size=5)
    out = make_holder_attack("sign-flip", scale=3.0)(context(rng, own=own))
    assert len(out) == 1 and np.array_equal(out[0], -3.0 * own)


def test_opposite_is_the_papers_optimal_attack(rng):
    honest = [rng.normal(size=5) + 1 for _ in range(7)]
    attack = make_holder_attack("opposite", scale=1.5)
    assert attack.omniscient
    byz = [attack(context(rng, honest=honest, f=3))[0] for _ in range(3)]
    h = sum(honest)
    b = sum(byz)
    cos = float(b @ h / (np.linalg.norm(b) * np.linalg.norm(h)))
    assert cos == pytest.approx(-1.0, abs=1e-12)  # dist = -1 (Section V-B)
    assert np.linalg.norm(b) == pytest.approx(1.5 * np.linalg.norm(h))  # ||g_b|| >= ||g_h||


def test_alie_z_matches_the_normal_quantile():
    for n, f in [(50, 24), (30, 9), (100, 10), (30, 13)]:
        s = math.floor(n / 2 + 1) - f
        assert alie_z(n, f) == pytest.approx(stats.norm.ppf((n - s) / n), rel=1e-9)
    # n = 50, f = 24: s = 2 holders to win over, z = Phi^-1(48/50) ~ 1.75 (Baruch et al. 2019)
    assert alie_z(50, 24) == pytest.approx(1.7507, abs=1e-4)


def test_alie_sends_mean_minus_z_std(rng):
    honest = [rng.normal(size=6) * (1 + i) for i in range(5)]
    out = make_holder_attack("alie")(context(rng, honest=honest, f=2, n=7, dim=6))[0]
    z = NormalDist().inv_cdf((7 - (math.floor(7 / 2 + 1) - 2)) / 7)
    for j in range(6):
        col = [float(h[j]) for h in honest]
        mu = sum(col) / 5
        sd = math.sqrt(sum((c - mu) ** 2 for c in col) / 4)
        assert out[j] == pytest.approx(mu - z * sd, rel=1e-12, abs=1e-12)
    fixed = make_holder_attack("alie", z=0.5)(context(rng, honest=honest, f=2, n=7, dim=6))[0]
    assert np.allclose(fixed, np.mean(honest, axis=0) - 0.5 * np.std(honest, axis=0, ddof=1))


def test_ipm_sends_minus_epsilon_times_the_honest_mean(rng):
    honest = [rng.normal(size=5) for _ in range(4)]
    out = make_holder_attack("ipm", epsilon=0.5)(context(rng, honest=honest))[0]
    assert np.allclose(out, -0.5 * sum(honest) / 4)


def test_omniscient_attacks_refuse_without_honest_vectors(rng):
    for name in ("opposite", "alie", "ipm"):
        with pytest.raises(ConfigError, match="honest"):
            make_holder_attack(name)(context(rng, honest=[]))


@pytest.mark.parametrize("tilt", [0.0, 30.0, 60.0])
def test_norm_inflation_keeps_a_chosen_angle_and_inflates_the_norm(rng, tilt):
    own = rng.normal(size=40)
    out = make_holder_attack("norm-inflation", factor=1e4, tilt=tilt)(context(rng, own=own, dim=40))[0]
    assert np.linalg.norm(out) == pytest.approx(1e4 * np.linalg.norm(own), rel=1e-12)
    cos = out @ own / (np.linalg.norm(out) * np.linalg.norm(own))
    assert cos == pytest.approx(math.cos(math.radians(tilt)), abs=1e-12)
    # every attacker tilts towards the same direction
    other = rng.normal(size=40)
    out2 = make_holder_attack("norm-inflation", factor=1e4, tilt=tilt)(context(rng, own=other, dim=40))[0]
    if tilt:
        r1 = out / np.linalg.norm(out) - math.cos(math.radians(tilt)) * own / np.linalg.norm(own)
        r2 = out2 / np.linalg.norm(out2) - math.cos(math.radians(tilt)) * other / np.linalg.norm(other)
        c = r1 @ r2 / (np.linalg.norm(r1) * np.linalg.norm(r2))
        assert c > 0.9


def test_sybil_sends_one_message_per_identity(rng):
    out = make_holder_attack("sybil", identities=7)(context(rng))
    assert len(out) == 7
    inner = make_holder_attack("sybil", identities=3, inner="gaussian", inner_options={"sigma": 5.0})
    vecs = inner(context(rng, dim=2000))
    assert len(vecs) == 3 and abs(np.std(vecs[0]) - 5.0) < 0.3 and not np.array_equal(vecs[0], vecs[1])
    with pytest.raises(ConfigError):
        make_holder_attack("sybil", inner="sybil")


def logistic_reference_gradient(w, b, x, y, clip):
    """Per-example gradients of binary cross-entropy, clipped at G and summed, in numpy."""
    total = np.zeros(len(w) + 1)
    for xi, yi in zip(x.astype(np.float64), y):
        p = 1 / (1 + math.exp(-(float(np.dot(w, xi)) + b)))
        g = np.append((p - yi) * xi, p - yi)
        n = np.linalg.norm(g)
        total += g / max(1.0, n / clip)
    return total


def test_label_flip_is_the_clipped_gradient_on_flipped_labels():
    params = small_params(dim=5, clip=0.3, batch_size=50)
    genesis = genesis_for(params)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=12)
    holder = DataHolder(0, x, y, params, rng=np.random.default_rng(1))
    out = make_holder_attack("label-flip")(context(rng, holder=holder, base=genesis))[0]
    w = np.asarray(genesis.model[:4], dtype=np.float32).astype(np.float64)
    b = float(np.float32(genesis.model[4]))
    want = logistic_reference_gradient(w, b, x, 1 - y, 0.3)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(flipped_labels(np.array([0, 3, 9]), 10), np.array([9, 6, 0]))
    assert torch.equal(flipped_labels(torch.tensor([0, 1]), 2), torch.tensor([1, 0]))


def test_sybil_messages_reach_the_block_under_fresh_identities(tmp_path):
    s = run_training(TrainConfig(dataset="breast-cancer", rounds=2, epsilon=1.0, byzantine=1, attack="sybil",
                                 attack_options={"identities": 6}, aggregator="mean", out=str(tmp_path),
                                 progress=False))
    store = SQLiteStore(tmp_path / "chain.sqlite", create=False)
    blocks = list(store.canonical_blocks(1))
    assert all(len(b.messages) == 9 + 6 for b in blocks)  # 9 honest holders, one attacker with 6 identities
    for b in blocks:
        assert len({m.identity for m in b.messages}) == len(b.messages)
    # 9 honest identities and the attacker's own are kept across rounds; its 5 others are fresh each round
    assert len({m.identity for b in blocks for m in b.messages}) == 10 + 2 * 5
    assert s["selected_byzantine_total"] == 12


def test_gaussian_attack_draws_n_0_sigma2(rng):
    out = make_holder_attack("gaussian", sigma=200.0)(context(rng, dim=5000))
    assert len(out) == 1
    assert stats.kstest(out[0] / 200.0, "norm").pvalue > 1e-3
    assert stats.kstest(out[0] / 150.0, "norm").pvalue < 1e-3
