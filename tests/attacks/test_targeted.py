"""The attack on l-nearest and the backdoor against their definitions, the
backdoor's config check, and every new attack through ``learningchain train``."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from learningchain.attacks.holders import AttackContext, make_holder_attack, stamp_trigger
from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.holder import DataHolder

from ..helpers import genesis_for, small_params
from .test_holders import logistic_reference_gradient


def noisy_honest(rng, n=25, d=11, signal=1.0, noise=1.0):
    e = np.zeros(d)
    e[0] = 1.0
    return [signal * e + noise * rng.normal(size=d) for _ in range(n)]


def _slow_cosines(vectors):
    units = [v / math.sqrt(sum(float(x) ** 2 for x in v)) for v in vectors]
    s = [sum(u[j] for u in units) for j in range(len(units[0]))]
    ns = math.sqrt(sum(x * x for x in s))
    return [sum(float(u[j]) * s[j] for j in range(len(s))) / ns for u in units]


def _selected_with_margin(u, honest, c, l, margin):
    cos = _slow_cosines([u] * c + honest)
    others = sorted(cos[c:], reverse=True)
    return l - c >= len(others) or cos[0] >= others[l - c] + margin


def test_l_nearest_margin_turns_as_far_as_the_selection_allows(rng):
    honest = noisy_honest(rng)
    c, l = 5, 15  # K = 30: the paper's l = ceil(K / 2)
    ctx = AttackContext(round=0, dim=11, rng=rng, own_gradient=lambda: None, honest=honest, byzantine_count=c,
                        holders=30)
    out = make_holder_attack("l-nearest-margin")(ctx)[0]
    assert np.linalg.norm(out) == pytest.approx(1000 * max(np.linalg.norm(h) for h in honest), rel=1e-12)
    u = out / np.linalg.norm(out)
    assert _selected_with_margin(u, honest, c, l, 0.01)  # all five among the l nearest (Eq. 15)
    units = [h / np.linalg.norm(h) for h in honest]
    hdir = sum(units) / np.linalg.norm(sum(units))
    phi = math.acos(max(-1.0, min(1.0, float(u @ hdir))))
    assert phi > math.pi / 2  # it points against the honest direction and is still selected
    r = (u - math.cos(phi) * hdir) / math.sin(phi)
    nxt = phi + math.pi / 180  # one step further on the grid is not selected
    assert not _selected_with_margin(math.cos(nxt) * hdir + math.sin(nxt) * r, honest, c, l, 0.01)
    # every attacker sends the same vector
    assert np.array_equal(out, make_holder_attack("l-nearest-margin")(ctx)[0])


def test_trigger_is_a_square_one_pixel_in_from_the_bottom_right_corner():
    x = np.zeros((2, 784), dtype=np.float32)
    out = stamp_trigger(x)
    want = {r * 28 + col for r in range(28) for col in range(28) if 23 <= r <= 26 and 23 <= col <= 26}
    assert set(np.flatnonzero(out[0])) == want and np.all(out[:, sorted(want)] == 1.0)
    assert not x.any()  # a copy
    t = stamp_trigger(torch.zeros(1, 16), size=2, value=0.5)
    assert set(torch.nonzero(t[0]).flatten().tolist()) == {1 * 4 + 1, 1 * 4 + 2, 2 * 4 + 1, 2 * 4 + 2}
    with pytest.raises(ConfigError, match="square"):
        stamp_trigger(np.zeros((1, 10)))


def test_backdoor_sends_the_boosted_gradient_of_its_poisoned_batch():
    params = small_params(model={"kind": "logistic", "inputs": 16, "classes": 2}, dim=17, clip=0.3, batch_size=50)
    genesis = genesis_for(params)
    rng = np.random.default_rng(4)
    x = rng.random(size=(12, 16)).astype(np.float32)
    y = np.zeros(12, dtype=np.int64)
    holder = DataHolder(0, x, y, params, rng=np.random.default_rng(1))
    ctx = AttackContext(round=0, dim=17, rng=rng, own_gradient=lambda: None, holders=6, holder=holder, base=genesis)
    attack = make_holder_attack("backdoor", target=1, size=2, poison_fraction=0.25)
    out = attack(ctx)[0]
    xp, yp = x.copy(), y.copy()
    for i in range(3):  # the first quarter of the batch: trigger stamped, label set to the target
        for r in (1, 2):
            for col in (1, 2):
                xp[i, r * 4 + col] = 1.0
        yp[i] = 1
    w = np.asarray(genesis.model[:16], dtype=np.float32).astype(np.float64)
    b = float(np.float32(genesis.model[16]))
    want = 6 * logistic_reference_gradient(w, b, xp, yp, 0.3)  # boost = K = 6 by default
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    boosted = make_holder_attack("backdoor", target=1, size=2, poison_fraction=0.25, boost=2.0)(ctx)[0]
    np.testing.assert_allclose(boosted, out / 3, rtol=1e-6, atol=1e-7)


def test_backdoor_is_refused_on_data_sets_without_images():
    for dataset in ("synthetic", "breast-cancer"):
        with pytest.raises(ConfigError, match="image data set"):
            TrainConfig(dataset=dataset, byzantine=1, attack="backdoor")
    with pytest.raises(ConfigError, match="image data set"):
        TrainConfig(dataset="synthetic", byzantine=1, attack="sybil", attack_options={"inner": "backdoor"})
    TrainConfig(dataset="mnist", byzantine=1, attack="backdoor")
    TrainConfig(dataset="fashion-mnist", byzantine=1, attack="backdoor", attack_options={"target": 3})
    with pytest.raises(ConfigError, match="bad options"):
        TrainConfig(dataset="mnist", byzantine=1, attack="backdoor", attack_options={"trigger": "star"})


@pytest.mark.parametrize("attack, rule", [("inf", "mean"), ("mimic", "l-nearest"), ("min-max", "multi-krum"),
                                          ("min-sum", "l-nearest"), ("fang-trimmed-mean", "trimmed-mean"),
                                          ("fang-krum", "krum"), ("l-nearest-margin", "l-nearest-bounded")])
def test_every_new_attack_runs_through_learningchain_train(tmp_path, capsys, attack, rule):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "10", "--byzantine", "3", "--attack", attack,
                 "--aggregator", rule, "--rounds", "2", "--epsilon", "0.5", "--out", str(out), "--quiet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["attack"] == attack and summary["rounds"] == 2 and summary["rejected_blocks"] == 0
    assert "attack_success_rate" not in summary


def test_backdoor_run_reports_its_attack_success_rate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--holders", "10", "--byzantine", "2", "--attack", "backdoor",
                 "--rounds", "2", "--no-dp", "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.0 <= summary["attack_success_rate"] <= 1.0
    assert list(summary).index("attack_success_rate") == list(summary).index("test_error") + 1
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert "attack_success_rate" in rows[0] and rows[-1]["attack_success_rate"] != ""
    assert float(rows[-1]["attack_success_rate"]) == pytest.approx(summary["attack_success_rate"])


def test_the_evaluator_scores_the_backdoor_of_a_sybil_attacker_too():
    from types import SimpleNamespace

    from learningchain.experiments.report import backdoor_attack

    sybil = make_holder_attack("sybil", identities=2, inner="backdoor", inner_options={"target": 3})
    assert backdoor_attack(SimpleNamespace(attacks={4: sybil})).target == 3
    assert backdoor_attack(SimpleNamespace(attacks={4: make_holder_attack("sign-flip")})) is None
