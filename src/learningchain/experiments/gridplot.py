"""The pictures of a grid's ``results.csv``: the attack x rule heatmap (one
panel per fraction, one row of panels per Dirichlet alpha)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["CLEAN", "heatmap_figure", "plot_heatmap", "alphas_of", "same"]

CLEAN = "none"  # the attack column of runs without Byzantine holders


def same(a, b) -> bool:
    """Two fractions or alphas of a results row are the same (None: no alpha axis)."""
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) < 1e-9


def alphas_of(rows: list) -> list:
    """The Dirichlet alphas of the rows, sorted ([None] for a grid without the axis)."""
    values = {None if r.get("alpha") in (None, "") else float(r["alpha"]) for r in rows}
    return sorted(values, key=lambda a: -1.0 if a is None else a)


def _table(rows: list, fraction: float, alpha, attacks: list, rules: list):
    grid = np.full((len(attacks), len(rules)), np.nan)
    for i, attack in enumerate(attacks):
        for j, rule in enumerate(rules):
            errs = [r["test_error"] for r in rows if r["attack"] == attack and r["aggregator"] == rule
                    and r.get("status") == "ok" and r["test_error"] is not None and same(r.get("alpha"), alpha)
                    and (attack == CLEAN or same(r["fraction"], fraction))]
            if errs:
                grid[i, j] = float(np.mean(errs))
    return grid


def _panel(ax, rows: list, fraction: float, alpha, attacks: list, rules: list, first: bool, bottom: bool):
    table = _table(rows, fraction, alpha, attacks, rules)
    image = ax.imshow(table, vmin=0.0, vmax=1.0, cmap="RdYlGn_r", aspect="auto")
    ax.set_xticks(range(len(rules)))
    ax.set_xticklabels(rules if bottom else [""] * len(rules), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(attacks)))
    ax.set_yticklabels(attacks if first else [""] * len(attacks), fontsize=8)
    if bottom:
        ax.set_xlabel("aggregation rule", fontsize=8)
    if first:
        ax.set_ylabel("attack", fontsize=8)
    attacked = [r for r in rows if r["attack"] != CLEAN and same(r["fraction"], fraction)]
    holders = next((r["holders"] for r in attacked), None)
    byz = next((r["byzantine"] for r in attacked), None)
    ax.set_title(f"{fraction:.0%} Byzantine" + (f" ({byz} of {holders})" if holders else "")
                 + ("" if alpha is None else f", alpha {alpha:g}"), fontsize=9)
    for i in range(len(attacks)):
        for j in range(len(rules)):
            v = table[i, j]
            if v == v:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                        color="white" if v > 0.6 or v < 0.12 else "black")
    return image


def heatmap_figure(rows: list, *, title: str = ""):
    """Final test error, attacks (rows) x rules (columns), one panel per fraction
    (and one row of panels per Dirichlet alpha), as ByzFL draws its benchmark
    heatmaps (mean over seeds when there are several), as a matplotlib Figure laid
    out so that no label is cut off."""
    rules = list(dict.fromkeys(r["aggregator"] for r in rows))
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    if CLEAN in attacks:
        attacks = [CLEAN] + [a for a in attacks if a != CLEAN]
    fractions = sorted({float(r["fraction"]) for r in rows if r["attack"] != CLEAN}) or [0.0]
    alphas = alphas_of(rows)
    fig = Figure(figsize=(0.75 * len(rules) * len(fractions) + 3.0,
                          (0.45 * len(attacks) + 1.6) * len(alphas) + 1.0), layout="constrained")
    axes = fig.subplots(len(alphas), len(fractions), squeeze=False)
    image = None
    for r, alpha in enumerate(alphas):
        for c, fraction in enumerate(fractions):
            image = _panel(axes[r][c], rows, fraction, alpha, attacks, rules, c == 0, r == len(alphas) - 1)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="final test error")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_heatmap(rows: list, path: str | Path, *, title: str = "") -> None:
    """Write :func:`heatmap_figure` to ``path`` (nothing when there are no rows)."""
    if not rows:
        return
    heatmap_figure(rows, title=title).savefig(path, dpi=130, bbox_inches="tight")
