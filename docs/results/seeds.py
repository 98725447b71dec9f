"""Score a many-seed reproduction (figures/breast-cancer-seeds.toml) seed by seed.

    python docs/results/seeds.py runs/breast-cancer-seeds \
        src/learningchain/experiments/figures/breast-cancer-seeds.toml docs/results/breast-cancer-seeds.csv

For every curve: each seed's final error (the mean test error over the last 20%
of the evaluated rounds, the metric of docs/RESULTS.md and experiments/claims.py),
their mean, standard deviation and a two-sided 95% Student-t interval of the
mean; for every Byzantine curve the same for its paired difference to the
panel's run without Byzantine holders (same seed: same split, noise and keys).
The paper's claims are then decided only where the interval leaves no doubt:

* "converges with b Byzantine holders": yes if the interval of the mean lies
  below half the chance level (0.25), no if above, otherwise inconclusive;
* "at a higher error": yes if the interval of the paired difference lies above
  0, no if below, otherwise inconclusive;
* "fails with b Byzantine holders (a majority)": yes if the error is above 0.25
  or at least 0.1 above the clean run (interval above), no if both intervals
  lie below, otherwise inconclusive.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from learningchain.experiments.claims import final_error, interval
from learningchain.experiments.reproduce import figure_jobs, load_figure

HALF_CHANCE = 0.25


def per_seed(out: Path, figure: str) -> dict:
    """(panel, curve) -> {seed: final error} from the runs' metrics.csv."""
    errors: dict = {}
    for job in figure_jobs(load_figure(figure), quick=False, out=out):
        with open(Path(job.config.out) / "metrics.csv") as fh:
            curve = [(int(r["round"]), float(r["test_error"])) for r in csv.DictReader(fh) if r["test_error"]]
        errors.setdefault((job.panel, job.curve), {})[job.seed] = final_error({"curve": curve, "summary": {}})
    return errors


def verdicts(errors: dict) -> list:
    rows = []
    for panel in sorted({p for p, _ in errors}):
        clean = errors[(panel, "no Byzantine")]
        curves = [c for p, c in errors if p == panel]
        majority = max((c for c in curves if c != "no Byzantine"), key=lambda c: int(c.split()[0]))
        for curve in curves:
            e = errors[(panel, curve)]
            seeds = sorted(e)
            mean, sd, lo, hi = interval([e[s] for s in seeds])
            row = {"panel": panel, "curve": curve, "seeds": len(seeds), "mean": mean, "sd": sd, "ci_low": lo,
                   "ci_high": hi}
            if curve != "no Byzantine":
                d_mean, d_sd, d_lo, d_hi = interval([e[s] - clean[s] for s in seeds])
                row.update(diff_mean=d_mean, diff_ci_low=d_lo, diff_ci_high=d_hi)
                if curve == majority:
                    row["fails"] = ("yes" if lo >= HALF_CHANCE or d_lo >= 0.1 else
                                    "no" if hi < HALF_CHANCE and d_hi < 0.1 else "inconclusive")
                else:
                    row["converges"] = "yes" if hi < HALF_CHANCE else "no" if lo >= HALF_CHANCE else "inconclusive"
                    row["higher"] = "yes" if d_lo > 0 else "no" if d_hi < 0 else "inconclusive"
            rows.append(row)
    return rows


FIELDS = ["panel", "curve", "seeds", "mean", "sd", "ci_low", "ci_high", "diff_mean", "diff_ci_low", "diff_ci_high",
          "converges", "higher", "fails"]


def main(argv: list) -> int:
    out, figure, csv_path = Path(argv[0]), argv[1], Path(argv[2])
    rows = verdicts(per_seed(out, figure))
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    for r in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
