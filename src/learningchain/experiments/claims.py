"""The paper's claims, checked against a reproduction's numbers.

Each claim is stated as the paper states it, with the rule used to decide it
and our numbers. "Final error" is the mean test error over the last 20% of the
evaluated rounds (one round's value is noisy under DP). Chance level is 0.5 for
the binary sets and 0.9 for MNIST.

Where a curve was run with several seeds (each seed its own data split,
partition, noise and keys), a claim is decided against the seeds' spread, not
their mean alone: a two-sided 95% Student-t interval of the mean final error
(for a comparison of two curves, of the paired difference, same seed) must lie
on one side of the claim's threshold, otherwise the verdict is "inconclusive".
With one seed the point values are compared and the verdict says that the
spread was not tested. A comparison whose better run does not learn (final
error at least half the chance level) is "not testable".
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy import stats

__all__ = ["evaluate_claims", "write_claims", "final_error", "interval", "seed_errors"]

_CHANCE = {"synthetic": 0.5, "breast-cancer": 0.5, "mnist": 0.9, "fashion-mnist": 0.9}


def final_error(result: dict) -> float:
    curve = result["curve"]
    if not curve:
        return float(result["summary"]["test_error"])
    k = max(1, len(curve) // 5)
    return sum(e for _, e in curve[-k:]) / k


def interval(values) -> tuple:
    """Mean, standard deviation (ddof 1) and the two-sided 95% t-interval of the mean.

    With a single value the spread is unknown: sd is nan and the interval is the point."""
    x = np.asarray(list(values), dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), mean, mean
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1)) * sd / math.sqrt(len(x))
    return mean, sd, mean - half, mean + half


def seed_errors(result: dict) -> dict:
    """{seed: final error} of a (merged) result; a result without per-seed curves counts as one seed."""
    curves = result.get("seed_curves") or {result["job"].seed if "job" in result else 0: result["curve"]}
    return {seed: final_error({"curve": curve, "summary": result["summary"]}) for seed, curve in curves.items()}


def _paired(a: dict, b: dict) -> list:
    """a - b per seed, over the seeds both have."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def _side(values: list, threshold: float) -> str:
    """"below" / "above" the threshold, or "inconclusive" when the 95% interval reaches it.

    One value: the point is compared (inconclusive only when equal)."""
    mean, _, lo, hi = interval(values)
    if len(values) < 2:
        return "below" if mean < threshold else "above" if mean > threshold else "inconclusive"
    return "below" if hi < threshold else "above" if lo > threshold else "inconclusive"


def _numbers(values: list) -> str:
    mean, _, lo, hi = interval(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ({len(values)} seeds, 95% CI {lo:.4f}-{hi:.4f})"


def _single(*groups) -> str:
    return " (1 seed: the spread is not tested)" if min(len(g) for g in groups) < 2 else ""


def _index(results: dict) -> dict:
    out = {}
    for fig, rs in results.items():
        for r in rs:
            out[(fig, r["job"].panel, r["job"].curve)] = r
    return out


def evaluate_claims(results: dict) -> list:
    idx = _index(results)
    rows = []

    def add(claim, where, numbers, holds, rule):
        verdict = holds if isinstance(holds, str) else ("yes" if holds else "no")
        rows.append({"claim": claim, "where": where, "our numbers": numbers, "holds": verdict, "rule": rule})

    untestable = "not testable: the run without Byzantine holders does not learn either (noise dominates)"
    yes_no = {"below": "no", "above": "yes", "inconclusive": "inconclusive"}

    if "fig5" in results:
        for ds, (p01, p03) in {"synthetic": ("a", "d"), "breast-cancer": ("b", "e"), "mnist": ("c", "f")}.items():
            half = _CHANCE.get(ds, 0.5) / 2
            a, b = idx.get(("fig5", p01, "no Byzantine")), idx.get(("fig5", p03, "no Byzantine"))
            if a and b:
                e1, e3 = seed_errors(a), seed_errors(b)
                learns = _side(list(e3.values()), half) == "below"
                verdict = (yes_no[_side(_paired(e1, e3), 0.0)] + _single(e1, e3) if learns else
                           "not testable: both runs at chance level (noise dominates)"
                           if _side(list(e1.values()), half) != "below" else
                           "not testable: the eps = 0.3 run does not learn")
                add("privacy trade-off: eps = 0.1 gives a higher test error than eps = 0.3", f"Fig. 5 {ds}",
                    f"{_numbers(list(e1.values()))} (eps 0.1) vs {_numbers(list(e3.values()))} (eps 0.3)", verdict,
                    "the eps 0.3 run learns (final error below half the chance level) and the paired difference "
                    "(eps 0.1 - eps 0.3) is above 0")
            for panel in (p01, p03):
                clean = idx.get(("fig5", panel, "no Byzantine"))
                byz = [r for (f, p, c), r in idx.items() if f == "fig5" and p == panel and c != "no Byzantine"]
                byz.sort(key=lambda r: r["summary"]["byzantine"])
                if not clean or len(byz) < 3:
                    continue
                e0 = seed_errors(clean)
                eps = clean["summary"]["config"]["epsilon"]
                k = clean["summary"]["holders"]
                learns = _side(list(e0.values()), half) == "below"
                chance = _CHANCE.get(ds, 0.5)
                for r in byz[:2]:
                    e = seed_errors(r)
                    diff = _paired(e, e0)
                    conv = {"below": "yes", "above": "no", "inconclusive": "inconclusive"}[
                        _side(list(e.values()), half)]
                    verdict = (f"converges: {conv}; higher: {yes_no[_side(diff, 0.0)]}" + _single(e, e0)
                               if learns else untestable)
                    add(f"converges with {r['summary']['byzantine']} of {k} Byzantine holders, at a higher error",
                        f"Fig. 5 {ds}, eps {eps}",
                        f"{_numbers(list(e.values()))} vs {_numbers(list(e0.values()))} without Byzantine "
                        f"(chance {chance})", verdict,
                        "converges: final error below half the chance level; higher: the paired difference to "
                        "the run without Byzantine holders is above 0")
                r = byz[2]
                e = seed_errors(r)
                level, margin = _side(list(e.values()), half), _side(_paired(e, e0), 0.1)
                fails = ("yes" if "above" in (level, margin) else
                         "no" if level == margin == "below" else "inconclusive")
                add(f"fails with {r['summary']['byzantine']} of {k} Byzantine holders (a majority)",
                    f"Fig. 5 {ds}, eps {eps}",
                    f"{_numbers(list(e.values()))} vs {_numbers(list(e0.values()))} without Byzantine",
                    fails + _single(e, e0) if learns else untestable,
                    "final error at least 0.1 above the clean run (paired), or above half the chance level")
    if "fig6" in results:
        for panel, ds in (("a", "synthetic"), ("b", "breast-cancer"), ("c", "mnist")):
            lc = idx.get(("fig6", panel, "LearningChain (eps per round)"))
            for label in ("LearningChainEx (eps/T)", "LearningChainEx (eps/(t(t+1)))"):
                ex = idx.get(("fig6", panel, label))
                if lc and ex:
                    a, b = seed_errors(lc), seed_errors(ex)
                    learns = _side(list(a.values()), _CHANCE.get(ds, 0.5) / 2) == "below"
                    diff = _paired(b, a)
                    _, _, lo, hi = interval(diff)
                    close = ("yes" if -0.05 <= lo and hi <= 0.05 else
                             "no" if lo > 0.05 or hi < -0.05 else "inconclusive") + _single(a, b)
                    add(f"{label} is comparable to LearningChain", f"Fig. 6 {ds}",
                        f"{_numbers(list(b.values()))} vs {_numbers(list(a.values()))}", close if learns else
                        "not testable: LearningChain itself does not learn (noise dominates)",
                        "the paired difference of the final errors lies within 0.05")
    if "fig7" in results:
        for panel, pct in (("a", 10), ("b", 40), ("c", 70)):
            ln, mk = idx.get(("fig7", panel, "l-nearest")), idx.get(("fig7", panel, "multi-Krum"))
            if not (ln and mk):
                continue
            a, b = seed_errors(ln), seed_errors(mk)
            diff = _paired(a, b)
            note = _single(a, b)
            nums = f"l-nearest {_numbers(list(a.values()))}, multi-Krum {_numbers(list(b.values()))}"
            if pct == 10:
                _, _, lo, hi = interval(diff)
                alike = ("yes" if -0.02 <= lo and hi <= 0.02 else
                         "no" if lo > 0.02 or hi < -0.02 else "inconclusive")
                add("at 10% Byzantine, l-nearest and multi-Krum perform alike", "Fig. 7 MNIST", nums,
                    alike + note, "the paired difference of the final errors lies within 0.02")
            elif pct == 40:
                add("at 40% Byzantine, l-nearest has a much lower error than multi-Krum", "Fig. 7 MNIST", nums,
                    {"below": "yes", "above": "no", "inconclusive": "inconclusive"}[_side(diff, -0.05)] + note,
                    "l-nearest at least 0.05 lower (paired)")
            else:
                both = [_side(list(x.values()), 0.45) for x in (a, b)]
                add("at 70% Byzantine, neither l-nearest nor multi-Krum is resilient", "Fig. 7 MNIST", nums,
                    ("yes" if both == ["above", "above"] else "no" if "below" in both else "inconclusive") + note,
                    "both final errors at least half the chance level (0.45)")
    return rows


def write_claims(results: dict, out: Path, *, quick: bool = False) -> Path:
    rows = evaluate_claims(results)
    path = Path(out) / ("claims-quick.md" if quick else "claims.md")
    with open(path, "w") as fh:
        fh.write("| claim | where | our numbers | holds | rule |\n|---|---|---|---|---|\n")
        for r in rows:
            fh.write(f"| {r['claim']} | {r['where']} | {r['our numbers']} | {r['holds']} | {r['rule']} |\n")
    with open(path.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["claim", "where", "our numbers", "holds", "rule"])
        w.writeheader()
        w.writerows(rows)
    return path
