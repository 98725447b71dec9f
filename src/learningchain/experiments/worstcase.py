"""Worst-case scoring of a grid, as ByzFL ranks aggregators: a rule is only as
good as its error under the attack that hurts it most.

For every rule, Byzantine fraction and Dirichlet alpha (when the grid has that
axis) the test errors of each attack are averaged over the seeds; the worst
attack is the one with the highest mean, and the table reports that mean, the
standard deviation over seeds of the same attack's cells (numpy's ``std``,
ddof 0, as ByzFL), the number of seeds and the attack's name. Runs without
attackers (attack ``none``) are not attacks: their mean is given beside it as
``clean_test_error``. A cell that failed is left out and counted in
``missing``, so a worst case over incomplete cells says so. A pre-aggregation
(NNM, bucketing, ARC) is an option of its rule (``aggregator_options``, one set
per rule in a grid), so a rule is scored with the pre-aggregation its grid
gives it; a pre-aggregation is compared across grids, not as an axis of one.

Writes ``worst_case.csv``, ``WORST_CASE.md`` (rules x fraction, one table per
alpha) and ``worst_case.png`` (the same as a heatmap)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .gridplot import CLEAN, alphas_of, same

__all__ = ["WORST_FIELDS", "worst_case", "write_worst_case", "worst_case_markdown", "worst_case_figure"]

WORST_FIELDS = ["aggregator", "fraction", "byzantine", "alpha", "worst_attack", "worst_test_error_mean",
                "worst_test_error_std", "seeds", "attacks", "missing", "clean_test_error"]


def _ok(row) -> bool:
    return row.get("status") == "ok" and row.get("test_error") is not None


def _mean_std(values: list) -> tuple:
    return float(np.mean(values)), float(np.std(values))


def _score(rows: list, rule: str, fraction: float, alpha) -> dict:
    """One line of the table: the worst attack of ``rule`` at ``fraction`` and ``alpha``."""
    mine = [r for r in rows if r["aggregator"] == rule and same(r.get("alpha"), alpha)]
    attacked = [r for r in mine if r["attack"] != CLEAN and same(r["fraction"], fraction)]
    per_attack: dict = {}
    for r in attacked:
        if _ok(r):
            per_attack.setdefault(r["attack"], []).append(float(r["test_error"]))
    clean = [float(r["test_error"]) for r in mine if r["attack"] == CLEAN and _ok(r)]
    line = {"aggregator": rule, "fraction": fraction, "alpha": alpha,
            "byzantine": next((r["byzantine"] for r in attacked), None), "attacks": len(per_attack),
            "missing": sum(not _ok(r) for r in attacked),
            "clean_test_error": round(_mean_std(clean)[0], 6) if clean else None,
            "worst_attack": None, "worst_test_error_mean": None, "worst_test_error_std": None, "seeds": 0}
    if per_attack:
        # the highest mean; ties go to the attack listed first in the grid
        worst = max(per_attack, key=lambda a: _mean_std(per_attack[a])[0])
        mean, std = _mean_std(per_attack[worst])
        line.update(worst_attack=worst, worst_test_error_mean=round(mean, 6), worst_test_error_std=round(std, 6),
                    seeds=len(per_attack[worst]))
    return line


def worst_case(rows: list) -> list:
    """The worst-case table of a grid's results rows (as :func:`read_results` gives them)."""
    rules = list(dict.fromkeys(r["aggregator"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows if r["attack"] != CLEAN})
    return [_score(rows, rule, fraction, alpha)
            for alpha in alphas_of(rows) for fraction in fractions for rule in rules]


def _cell_text(line: dict) -> str:
    if line["worst_attack"] is None:
        return "-"
    text = f"{line['worst_test_error_mean']:.3f} ± {line['worst_test_error_std']:.3f} ({line['worst_attack']})"
    return text + (f", {line['missing']} failed" if line["missing"] else "")


def worst_case_markdown(table: list) -> str:
    """Rules (rows) x fractions (columns), one table per alpha: 'mean ± std (worst attack)'."""
    out = []
    for alpha in alphas_of(table):
        lines = [t for t in table if same(t["alpha"], alpha)]
        fractions = sorted({t["fraction"] for t in lines})
        if alpha is not None:
            out.append(f"Dirichlet alpha = {alpha:g}\n")
        head = ["rule", "no attack"] + [
            f"{f:.0%} Byzantine" + (f" (b={b})" if (b := next((t["byzantine"] for t in lines
                                                                 if t["fraction"] == f), None)) else "")
            for f in fractions]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for rule in dict.fromkeys(t["aggregator"] for t in lines):
            mine = {t["fraction"]: t for t in lines if t["aggregator"] == rule}
            clean = next((t["clean_test_error"] for t in mine.values() if t["clean_test_error"] is not None), None)
            cells = [rule, "-" if clean is None else f"{clean:.3f}"] + [_cell_text(mine[f]) for f in fractions]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def worst_case_figure(table: list, *, title: str = ""):
    """Worst-case test error, rules (rows) x fractions (columns), one panel per alpha."""
    alphas = alphas_of(table)
    rules = list(dict.fromkeys(t["aggregator"] for t in table))
    fractions = sorted({t["fraction"] for t in table})
    fig = Figure(figsize=(1.3 * len(fractions) * len(alphas) + 3.0, 0.45 * len(rules) + 2.0), layout="constrained")
    axes = fig.subplots(1, len(alphas), squeeze=False)[0]
    image = None
    for ax, alpha in zip(axes, alphas):
        grid = np.full((len(rules), len(fractions)), np.nan)
        for t in table:
            if same(t["alpha"], alpha) and t["worst_test_error_mean"] is not None:
                grid[rules.index(t["aggregator"]), fractions.index(t["fraction"])] = t["worst_test_error_mean"]
                i, j = rules.index(t["aggregator"]), fractions.index(t["fraction"])
                ax.text(j, i, f"{t['worst_test_error_mean']:.2f}\n±{t['worst_test_error_std']:.2f}", ha="center",
                        va="center", fontsize=6.5, color="white" if grid[i, j] > 0.6 or grid[i, j] < 0.12 else "black")
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn_r", aspect="auto")
        ax.set_xticks(range(len(fractions)))
        ax.set_xticklabels([f"{f:.0%}" for f in fractions], fontsize=8)
        ax.set_xlabel("Byzantine fraction", fontsize=8)
        ax.set_yticks(range(len(rules)))
        ax.set_yticklabels(rules if ax is axes[0] else [""] * len(rules), fontsize=8)
        ax.set_title("worst case over attacks" + ("" if alpha is None else f", alpha {alpha:g}"), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01, label="worst-case test error (mean over seeds)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_worst_case(rows: list, out: str | Path, *, title: str = "") -> list:
    """worst_case.csv, WORST_CASE.md and worst_case.png in ``out``; returns the table
    (nothing is written when no row has an attack)."""
    out = Path(out)
    table = worst_case(rows)
    if not table:
        return table
    with open(out / "worst_case.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=WORST_FIELDS)
        writer.writeheader()
        writer.writerows(table)
    (out / "WORST_CASE.md").write_text((f"# {title}\n\n" if title else "") + worst_case_markdown(table))
    worst_case_figure(table, title=title).savefig(out / "worst_case.png", dpi=130, bbox_inches="tight")
    return table
