"""Inf, Mimic, Min-Max, Min-Sum and Fang's attacks, each against its paper's
definition computed independently (slow loops, closed forms)."""

import math

import numpy as np
import pytest

from learningchain.attacks.holders import HOLDER_ATTACKS, AttackContext, make_holder_attack
from learningchain.errors import ConfigError

NEW = ("inf", "mimic", "min-max", "min-sum", "fang-trimmed-mean", "fang-krum", "l-nearest-margin", "backdoor")


def context(rng, honest, *, f=2, n=None, dim=None):
    dim = dim or len(honest[0])
    return AttackContext(round=0, dim=dim, rng=rng, own_gradient=lambda: np.zeros(dim), honest=honest,
                         byzantine_count=f, holders=n or len(honest or ()) + f)


def test_the_new_attacks_are_registered_and_refuse_unknown_options():
    assert set(HOLDER_ATTACKS) >= set(NEW)
    for name in NEW:
        with pytest.raises(ConfigError, match="bad options"):
            make_holder_attack(name, strength=3)
    for name in ("mimic", "min-max", "min-sum", "fang-trimmed-mean", "fang-krum", "l-nearest-margin"):
        assert make_holder_attack(name).omniscient, name
    for name in ("inf", "backdoor"):
        assert not make_holder_attack(name).omniscient, name
    for name, options in [("inf", {"value": -1}), ("inf", {"value": 1e200}), ("mimic", {"worker": -1}),
                          ("min-max", {"perturbation": "cosine"}), ("min-sum", {"gamma_init": 0}),
                          ("fang-trimmed-mean", {"b": 1}), ("fang-krum", {"threshold": 0}),
                          ("l-nearest-margin", {"margin": -0.1}), ("l-nearest-margin", {"steps": 0}),
                          ("backdoor", {"target": -1}), ("backdoor", {"poison_fraction": 1.5})]:
        with pytest.raises(ConfigError):
            make_holder_attack(name, **options)


def test_inf_sends_a_huge_but_finite_vector(rng):
    out = make_holder_attack("inf")(context(rng, None, dim=7))
    assert len(out) == 1 and np.all(out[0] == 1e100)
    assert np.isfinite(float(np.dot(out[0], out[0])))  # its squared norm, which Krum needs


def test_mimic_copies_the_chosen_honest_holder(rng):
    honest = [rng.normal(size=6) * 0.1 for _ in range(8)]
    honest[5] = honest[5] + np.array([4.0, -3.0, 0, 0, 0, 0])  # the outlier along the main direction
    assert np.array_equal(make_holder_attack("mimic", worker=2)(context(rng, honest))[0], honest[2])
    assert np.array_equal(make_holder_attack("mimic", worker=10)(context(rng, honest))[0], honest[10 % 8])
    # the paper's heuristic, from the covariance's leading eigenvector (eigh, not the attack's SVD)
    mu = [sum(h[j] for h in honest) / 8 for j in range(6)]
    cov = np.array([[sum((h[a] - mu[a]) * (h[b] - mu[b]) for h in honest) for b in range(6)] for a in range(6)])
    z = np.linalg.eigh(cov)[1][:, -1]
    want = max(range(8), key=lambda i: (sum(z[j] * (honest[i][j] - mu[j]) for j in range(6)) ** 2, -i))
    assert want == 5
    assert np.array_equal(make_holder_attack("mimic")(context(rng, honest))[0], honest[want])


def _slow_perturbation(honest, kind):
    n, d = len(honest), len(honest[0])
    mu = [sum(h[j] for h in honest) / n for j in range(d)]
    if kind == "unit":
        norm = math.sqrt(sum(m * m for m in mu))
        return np.array([-m / norm for m in mu])
    if kind == "std":
        return np.array([-math.sqrt(sum((h[j] - mu[j]) ** 2 for h in honest) / n) for j in range(d)])
    return np.array([-float(np.sign(m)) for m in mu])


def _sq(a, b):
    return sum((float(x) - float(y)) ** 2 for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["unit", "std", "sign"])
def test_min_max_finds_the_largest_gamma_within_the_max_pairwise_distance(rng, kind):
    honest = [rng.normal(size=5) + 1.0 for _ in range(7)]
    out = make_holder_attack("min-max", perturbation=kind)(context(rng, honest))[0]
    mu = np.array([sum(h[j] for h in honest) / 7 for j in range(5)])
    p = _slow_perturbation(honest, kind)
    gamma = float((out - mu) @ p / (p @ p))
    np.testing.assert_allclose(out, mu + gamma * p, rtol=0, atol=1e-9)
    # closed form: for each honest x_i, ||mu - x_i + gamma p||^2 = R^2 is a quadratic in gamma
    r2 = max(_sq(a, b) for a in honest for b in honest)
    roots = []
    for x in honest:
        dv = mu - x
        a, b, c = p @ p, 2 * dv @ p, dv @ dv - r2
        roots.append((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))
    want = min(roots)
    assert 0 < want < 20  # within reach of the authors' search from gamma 10
    assert want - 2e-5 <= gamma <= want + 1e-12


@pytest.mark.parametrize("kind", ["unit", "std", "sign"])
def test_min_sum_finds_the_largest_gamma_within_the_max_sum_of_squared_distances(rng, kind):
    honest = [rng.normal(size=5) + 1.0 for _ in range(7)]
    out = make_holder_attack("min-sum", perturbation=kind)(context(rng, honest))[0]
    mu = np.array([sum(h[j] for h in honest) / 7 for j in range(5)])
    p = _slow_perturbation(honest, kind)
    gamma = float((out - mu) @ p / (p @ p))
    bound = max(sum(_sq(a, b) for b in honest) for a in honest)
    # sum_i ||mu - x_i + gamma p||^2 = sum_i ||mu - x_i||^2 + n gamma^2 ||p||^2 (the cross terms sum to 0)
    spread = sum(_sq(mu, x) for x in honest)
    want = math.sqrt((bound - spread) / (7 * float(p @ p)))
    assert 0 < want < 20
    assert want - 2e-5 <= gamma <= want + 1e-12


def test_min_max_default_is_the_inverse_unit_vector(rng):
    honest = [rng.normal(size=5) + 1.0 for _ in range(7)]
    assert np.array_equal(make_holder_attack("min-max")(context(rng, honest))[0],
                          make_holder_attack("min-max", perturbation="unit")(context(rng, honest))[0])


def test_fang_trimmed_mean_goes_beyond_the_honest_extremes_against_the_mean(rng):
    honest = [rng.normal(size=40) + rng.normal(size=40) for _ in range(9)]
    attack = make_holder_attack("fang-trimmed-mean")
    outs = [attack(context(rng, honest, f=3))[0] for _ in range(3)]
    assert not np.array_equal(outs[0], outs[1])  # each attacker draws its own values
    for j in range(40):
        col = [float(h[j]) for h in honest]
        lo_h, hi_h, mean = min(col), max(col), sum(col) / len(col)
        if mean > 0:  # the parameter would decrease: push it up with values below the honest minimum
            lo, hi = (lo_h / 2, lo_h) if lo_h > 0 else (2 * lo_h, lo_h)
        else:
            lo, hi = (hi_h, 2 * hi_h) if hi_h > 0 else (hi_h / 2, hi_h)
        for out in outs:
            assert lo <= out[j] <= hi
            assert (out[j] <= lo_h) if mean > 0 else (out[j] >= hi_h)


def _slow_krum(vectors, f):
    n = len(vectors)
    scores = []
    for i in range(n):
        d = sorted(_sq(vectors[i], vectors[j]) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    return scores


def _slow_lambda_max(honest, c):
    n, d = len(honest), len(honest[0])
    m = n + c
    sums = []
    for i in range(n):
        dist = sorted(math.sqrt(_sq(honest[i], honest[j])) for j in range(n) if j != i)
        sums.append(sum(dist[: m - c - 2]))
    return min(sums) / ((m - 2 * c - 1) * math.sqrt(d)) + max(math.sqrt(_sq(h, 0 * h)) for h in honest) / math.sqrt(d)


@pytest.mark.parametrize("c", [2, 4])
def test_fang_krum_sends_the_largest_halved_lambda_that_krum_selects(rng, c):
    honest = [rng.normal(size=12) + 0.5 for _ in range(11)]
    out = make_holder_attack("fang-krum")(context(rng, honest, f=c))[0]
    s = np.sign(sum(honest))
    lam = float(abs(out[0]))
    np.testing.assert_allclose(out, -lam * s, rtol=1e-15)
    lam_max = _slow_lambda_max(honest, c)
    k = round(math.log2(lam_max / lam))
    assert k >= 0 and lam == pytest.approx(lam_max / 2 ** k, rel=1e-9)

    def selected(lm):
        scores = _slow_krum([-lm * s] * c + honest, c)
        return min(scores[:c]) < min(scores[c:])

    assert selected(lam)
    if k > 0:
        assert not selected(2 * lam)
