"""Tight composition of the paper's pure eps-DP (l2-Laplace) releases: the PLD
figure against dp-accounting called directly, the closed form of Kairouz, Oh
and Viswanathan, RDP of randomised response, and what a run reports."""

import math

import pytest

from learningchain.privacy.accounting import (calibrate_round_epsilon, optimal_delta, optimal_epsilon, privacy_report,
                                              rdp_pure_epsilon, round_epsilons, tight_delta, tight_epsilon)
from learningchain.privacy.schedules import total_epsilon

from ..helpers import small_params

pld_lib = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
common = pytest.importorskip("dp_accounting.pld.common")


def pld_of(epsilons, interval=1e-4):
    """dp-accounting's PLD of eps_t-DP releases, built here without the project's code."""
    out = None
    for e in epsilons:
        one = pld_lib.from_privacy_parameters(common.DifferentialPrivacyParameters(e, 0.0),
                                              value_discretization_interval=interval)
        out = one if out is None else out.compose(one)
    return out


def kov_delta_at_grid(eps, k, i):
    """Kairouz-Oh-Viswanathan (2015) Thm. 3.3 as printed: the k-fold composition of
    eps-DP is ((k - 2i) eps, delta_i)-DP with
    delta_i = sum_{l=0}^{i-1} C(k, l) (e^{(k-l) eps} - e^{(k-2i+l) eps}) / (1 + e^eps)^k."""
    return sum(math.comb(k, l) * (math.exp((k - l) * eps) - math.exp((k - 2 * i + l) * eps))
               for l in range(i)) / (1 + math.exp(eps)) ** k


def test_demo_settings_pinned_against_dp_accounting_and_the_closed_form():
    eps, rounds, delta = 0.3, 200, 1e-5
    tight = tight_epsilon([eps] * rounds, delta)
    # one budget: a PLD grid (step <= 1e-4) on which +-0.3 lie exactly
    independent = pld_of([eps], interval=eps / 3000).self_compose(rounds).get_epsilon_for_delta(delta)
    assert tight == pytest.approx(independent, rel=1e-12)
    assert tight == pytest.approx(25.7494, abs=1e-3)  # dp-accounting 0.6.0
    exact = optimal_epsilon(eps, rounds, delta)
    assert exact == pytest.approx(25.7494, abs=1e-3)
    assert exact * (1 - 1e-9) <= tight <= exact * (1 + 1e-6)  # the PLD is an upper bound, here exact
    # on the default 1e-4 grid 0.3 is rounded up: still an upper bound, a little looser
    assert tight < pld_of([eps]).self_compose(rounds).get_epsilon_for_delta(delta) < exact * (1 + 1e-3)
    assert total_epsilon("constant", eps, rounds, rounds) == pytest.approx(60.0)  # basic composition
    assert tight_delta([eps] * rounds, tight) <= delta * (1 + 1e-6)


@pytest.mark.parametrize("eps,k", [(0.3, 10), (0.1, 100), (1.0, 30), (0.5, 7)])
def test_closed_form_is_kairouz_oh_viswanathan_theorem(eps, k):
    for i in range(0, k // 2 + 1):
        assert optimal_delta(eps, k, (k - 2 * i) * eps) == pytest.approx(kov_delta_at_grid(eps, k, i),
                                                                         rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("eps,k,at", [(0.3, 50, 3.0), (1.0, 20, 8.0), (0.1, 200, 1.1)])
def test_closed_form_agrees_with_dp_accounting_between_grid_points(eps, k, at):
    want = pld_of([eps]).self_compose(k).get_delta_for_epsilon(at)
    got = optimal_delta(eps, k, at)
    assert got == pytest.approx(want, rel=2e-2)
    assert got <= want * (1 + 1e-9)  # the PLD is pessimistic


def test_one_release_is_its_own_epsilon():
    assert optimal_delta(0.5, 1, 0.5) == 0.0
    assert optimal_delta(0.5, 1, 0.0) == pytest.approx((math.exp(0.5) - 1) / (math.exp(0.5) + 1))
    # delta buys a little: p - e^e' q = delta with p = e^eps / (1 + e^eps), q = 1 - p
    p = math.exp(0.5) / (1 + math.exp(0.5))
    assert optimal_epsilon(0.5, 1, 1e-5) == pytest.approx(math.log((p - 1e-5) / (1 - p)), rel=1e-8)
    assert tight_epsilon([0.5], 1e-5) == pytest.approx(0.5, abs=1e-4)


def test_heterogeneous_schedules_compose_release_by_release():
    delta = 1e-5
    for schedule in ("uniform", "decay"):
        epsilons = round_epsilons(schedule, 0.3, 200, 200)
        tight = tight_epsilon(epsilons, delta)
        pld_eps = pld_of(epsilons).get_epsilon_for_delta(delta)
        rdp_eps = rr_rdp_closed_form(epsilons, delta)
        assert tight == pytest.approx(min(pld_eps, rdp_eps), rel=1e-6)
        assert tight <= math.fsum(epsilons) + 1e-12
    # many budgets far below the PLD grid: RDP is the lower bound of the two
    late = round_epsilons("decay", 1.0, 300, 300)
    assert tight_epsilon(late, delta) == pytest.approx(rr_rdp_closed_form(late, delta), rel=1e-6)
    assert tight_epsilon(late, delta) < pld_of(late).get_epsilon_for_delta(delta)
    uniform = round_epsilons("uniform", 0.3, 200, 200)
    assert tight_epsilon(uniform, delta) == pytest.approx(optimal_epsilon(0.3 / 200, 200, delta), rel=1e-3)


def rr_rdp_closed_form(epsilons, delta):
    """Binary randomised response at each eps_t: RDP(a) = sum_t 1/(a-1) log(p^a q^(1-a) + q^a p^(1-a)),
    p = e^eps_t/(1+e^eps_t), converted by Canonne-Kamath-Steinke 2020, Prop. 12 (as dp-accounting)."""
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
    best = math.inf
    for a in orders:
        rdp = 0.0
        for eps in epsilons:
            p = math.exp(eps) / (1 + math.exp(eps))
            q = 1 - p
            x, y = a * math.log(p) + (1 - a) * math.log(q), a * math.log(q) + (1 - a) * math.log(p)
            rdp += (max(x, y) + math.log1p(math.exp(-abs(x - y)))) / (a - 1)
        best = min(best, rdp + math.log1p(-1 / a) - math.log(delta * a) / (a - 1))
    return max(0.0, best)


def test_rdp_of_pure_releases_matches_randomised_response_and_is_looser():
    got = rdp_pure_epsilon([0.3] * 200, 1e-5)
    assert got == pytest.approx(rr_rdp_closed_form([0.3] * 200, 1e-5), rel=1e-6)
    assert tight_epsilon([0.3] * 200, 1e-5) < got < 60.0


def test_report_gives_basic_and_tight_for_the_demo_settings():
    params = small_params(mechanism="l2-laplace", epsilon=0.3, rounds=200)
    report = privacy_report(params, 200, delta=1e-5)
    assert report["composition"] == "basic" and report["epsilon_total"] == pytest.approx(60.0)
    assert report["epsilon_total_tight"] == pytest.approx(
        pld_of([0.3], interval=0.3 / 3000).self_compose(200).get_epsilon_for_delta(1e-5), rel=1e-12)
    assert report["epsilon_total_tight"] == pytest.approx(optimal_epsilon(0.3, 200, 1e-5), rel=1e-6)
    assert report["delta_tight"] == 1e-5
    curve = report["tight_curve"]
    assert list(curve) == ["1e-03", "1e-05", "1e-07", "1e-09"]
    assert curve["1e-05"] == report["epsilon_total_tight"]
    assert curve["1e-09"] == pytest.approx(optimal_epsilon(0.3, 200, 1e-9), rel=1e-6)
    assert list(curve.values()) == sorted(curve.values())
    # a run that stopped early spends only its rounds; another delta gives another point of the curve
    assert privacy_report(params, 10, delta=1e-5)["epsilon_total_tight"] == pytest.approx(
        optimal_epsilon(0.3, 10, 1e-5), rel=1e-3)
    assert privacy_report(params, 200, delta=1e-3)["epsilon_total_tight"] < report["epsilon_total_tight"]


def test_decay_schedule_report():
    params = small_params(mechanism="l2-laplace", epsilon=0.3, rounds=50, schedule="decay")
    report = privacy_report(params, 50)
    assert report["epsilon_total"] == pytest.approx(0.3 * 50 / 51)
    assert report["delta_tight"] == 1e-5
    assert 0 < report["epsilon_total_tight"] <= report["epsilon_total"] + 1e-12


@pytest.mark.parametrize("schedule,target,rounds", [("constant", 10.0, 200), ("uniform", 3.0, 100),
                                                    ("decay", 1.0, 100), ("constant", 0.5, 1)])
def test_target_epsilon_chooses_the_largest_budget_within_it(schedule, target, rounds):
    delta = 1e-5
    eps = calibrate_round_epsilon(target_epsilon=target, delta=delta, schedule=schedule, rounds=rounds)
    spend = tight_epsilon(round_epsilons(schedule, eps, rounds, rounds), delta)
    assert spend <= target
    assert tight_epsilon(round_epsilons(schedule, eps * (1 + 2e-3), rounds, rounds), delta) > target
    # the tight accountant buys more per round than basic composition would allow (bar one release)
    basic = target / math.fsum(round_epsilons(schedule, 1.0, rounds, rounds))
    assert eps >= basic and (eps > 1.5 * basic or rounds == 1 or schedule == "decay")


def test_the_table_in_privacy_md_is_what_the_accountant_gives():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "PRIVACY.md").read_text()
    for eps, rounds in [(0.1, 100), (0.3, 200)]:
        epsilons = [eps] * rounds
        row = (f"| {eps:g} | {rounds} | {math.fsum(epsilons):.2f} | {optimal_epsilon(eps, rounds, 1e-5):.2f} "
               f"| {tight_epsilon(epsilons, 1e-5):.2f} | {rdp_pure_epsilon(epsilons, 1e-5):.2f} |")
        assert row in doc


def test_without_dp_accounting_the_closed_form_still_reports_one_budget(monkeypatch):
    from learningchain.errors import ConfigError
    from learningchain.privacy import composition

    def missing():
        raise ConfigError("no dp-accounting")

    monkeypatch.setattr(composition, "_dp", missing)
    monkeypatch.setattr(composition, "_PLD_CACHE", {})
    report = privacy_report(small_params(mechanism="l2-laplace", epsilon=0.3, rounds=20), 20)
    assert report["epsilon_total_tight"] == pytest.approx(optimal_epsilon(0.3, 20, 1e-5), rel=1e-12)
    assert "closed form" in report["tight_accountant"]
    report = privacy_report(small_params(mechanism="l2-laplace", epsilon=0.3, rounds=20, schedule="decay"), 20)
    assert report["epsilon_total_tight"] is None and "dp-accounting" in report["note"]
    assert report["epsilon_total"] == pytest.approx(0.3 * 20 / 21)
