"""The claims table decides against the seeds' spread, not the mean alone."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from learningchain.experiments.claims import evaluate_claims, interval


def _result(panel, curve, errors, *, byzantine=0, holders=10, eps=0.1, figure="fig5"):
    """A merged result whose seed s ends at errors[s] (a flat curve)."""
    job = SimpleNamespace(figure=figure, panel=panel, curve=curve, seed=0)
    curves = {s: [(t, e) for t in range(1, 11)] for s, e in enumerate(errors)}
    mean = float(np.mean(errors))
    summary = {"byzantine": byzantine, "holders": holders, "test_error": mean, "config": {"epsilon": eps}}
    return {"job": job, "summary": summary, "curve": [(t, mean) for t in range(1, 11)], "seed_curves": curves,
            "seeds": len(errors)}


def _fig5(panel_errors: dict) -> dict:
    rows = []
    for panel, curves in panel_errors.items():
        eps = 0.1 if panel in "abc" else 0.3
        for i, (label, errs) in enumerate(curves):
            rows.append(_result(panel, label, errs, byzantine=[0, 2, 4, 7][i], eps=eps))
    return {"fig5": rows}


def test_interval_is_students_t_of_the_mean():
    x = [0.11, 0.13, 0.09, 0.2, 0.15, 0.12]
    mean, sd, lo, hi = interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x)) and sd == pytest.approx(np.std(x, ddof=1))
    assert (lo, hi) == pytest.approx(ref)
    assert interval([0.3])[2:] == (0.3, 0.3)


def _claims_for(rows, text):
    return [c for c in rows if text in c["claim"]]


def test_a_margin_inside_the_seeds_spread_is_inconclusive_and_a_clear_one_is_decided():
    rng = np.random.default_rng(0)
    clean = list(0.10 + 0.05 * rng.standard_normal(20))
    noisy_higher = [c + 0.01 + 0.08 * rng.standard_normal() for c in clean]   # tiny margin, large spread
    clearly_higher = [c + 0.05 + 0.005 * rng.standard_normal() for c in clean]
    majority = [0.45 + 0.01 * rng.standard_normal() for _ in clean]
    fig = _fig5({"b": [("no Byzantine", clean), ("2 Byzantine", noisy_higher), ("4 Byzantine", clearly_higher),
                       ("7 Byzantine", majority)],
                 "e": [("no Byzantine", [c - 0.05 for c in clean]), ("2 Byzantine", clean),
                       ("4 Byzantine", clean), ("7 Byzantine", majority)]})
    rows = [c for c in evaluate_claims(fig) if "eps 0.1" in c["where"] and "breast-cancer" in c["where"]]
    two, four = _claims_for(rows, "with 2 of")[0], _claims_for(rows, "with 4 of")[0]
    # the paired difference of `noisy_higher` has a 95% interval that contains 0
    diff = np.subtract(noisy_higher, clean)
    lo, hi = stats.t.interval(0.95, 19, loc=diff.mean(), scale=stats.sem(diff))
    assert lo < 0 < hi
    assert two["holds"] == "converges: yes; higher: inconclusive"
    assert four["holds"] == "converges: yes; higher: yes"
    assert "20 seeds, 95% CI" in two["our numbers"]
    assert _claims_for(rows, "fails with 7")[0]["holds"] == "yes"
    trade = _claims_for(evaluate_claims(fig), "privacy trade-off")[0]
    assert trade["holds"] == "yes"  # eps 0.3 is 0.05 lower at every seed


def test_the_privacy_trade_off_is_not_testable_when_neither_run_learns():
    chance = [0.87, 0.86, 0.88]
    fig = {"fig5": [_result("c", "no Byzantine", chance), _result("f", "no Byzantine", [0.85, 0.85, 0.86], eps=0.3)]}
    (trade,) = evaluate_claims(fig)
    assert trade["where"] == "Fig. 5 mnist" and trade["holds"].startswith("not testable: both runs at chance")


def test_one_seed_compares_points_and_says_the_spread_was_not_tested():
    fig = _fig5({"a": [("no Byzantine", [0.010]), ("2 Byzantine", [0.012]), ("4 Byzantine", [0.02]),
                       ("7 Byzantine", [0.03])]})
    rows = evaluate_claims(fig)
    assert _claims_for(rows, "with 2 of")[0]["holds"] == "converges: yes; higher: yes (1 seed: the spread is not tested)"
    assert _claims_for(rows, "fails with 7")[0]["holds"] == "no (1 seed: the spread is not tested)"
