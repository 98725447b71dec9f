"""The grid's Dirichlet-alpha axis and its worst-case table (ByzFL's scoring)."""

import csv
import statistics
from pathlib import Path

import pytest

from learningchain.cli.main import main
from learningchain.errors import ConfigError
from learningchain.experiments.grid import grid_cells, load_grid, read_results, run_grid
from learningchain.experiments.worstcase import worst_case, worst_case_markdown

GRID = """
[grid]
attacks = ["sign-flip", "gaussian"]
aggregators = ["mean", "median"]
fractions = [0.2]
seeds = [0, 1]
alphas = [0.1, 1.0]
workers = 1

[train]
dataset = "synthetic"
holders = 10
miners = 2
rounds = 2
"""


def write(tmp_path, text):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_alphas_make_a_dirichlet_axis(tmp_path):
    cells = grid_cells(load_grid(write(tmp_path, GRID)))
    assert len(cells) == 2 * 2 * (2 + 2 * 2)  # seeds x alphas x (clean + attacks x rules)
    assert {(c.alpha, c.config["partition"], c.config["dirichlet_alpha"]) for c in cells} == {
        (0.1, "dirichlet", 0.1), (1.0, "dirichlet", 1.0)}
    assert len({c.id for c in cells}) == len(cells) and cells[0].id.endswith("__a0.1")
    plain = grid_cells(load_grid(write(tmp_path, GRID.replace("alphas = [0.1, 1.0]\n", ""))))
    assert all(c.alpha is None and "dirichlet_alpha" not in c.config and "__a" not in c.id for c in plain)


@pytest.mark.parametrize("text,match", [
    (GRID + 'partition = "iid"\n', "must not set them otherwise"),
    (GRID + "dirichlet_alpha = 0.3\n", "must not set them otherwise"),
    (GRID.replace("alphas = [0.1, 1.0]", "alphas = [0.0]"), "alphas must be"),
    (GRID.replace("alphas = [0.1, 1.0]", "alphas = [1.0, 1.0]"), "alphas must be"),
    (GRID.replace("alphas = [0.1, 1.0]", "") + "dirichlet_alpha = 0.3\n", "applies to partition"),
])
def test_bad_alpha_axes_are_refused(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_grid(write(tmp_path, text))


def test_the_alpha_reaches_the_partition_and_genesis():
    from learningchain.config import TrainConfig
    from learningchain.parties.genesis import build_chain_setup

    def sizes(alpha):
        setup = build_chain_setup(TrainConfig(holders=10, partition="dirichlet", dirichlet_alpha=alpha))
        return sorted(len(p) for p in setup.parts), setup.genesis.hash

    (skewed, g1), (even, g2) = sizes(0.05), sizes(100.0)
    assert g1 != g2 and skewed[-1] - skewed[0] > even[-1] - even[0]


def _by_hand(path: Path) -> dict:
    """The worst case straight from results.csv: per (rule, fraction, alpha), the
    attack with the highest mean over seeds, its mean and its population std."""
    errors: dict = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["attack"] != "none":
                key = (r["aggregator"], float(r["fraction"]), float(r["alpha"]))
                errors.setdefault(key, {}).setdefault(r["attack"], []).append(float(r["test_error"]))
    out = {}
    for key, attacks in errors.items():
        worst = max(attacks, key=lambda a: statistics.fmean(attacks[a]))
        out[key] = (worst, statistics.fmean(attacks[worst]), statistics.pstdev(attacks[worst]))
    return out


def test_worst_case_table_matches_a_hand_computation(tmp_path):
    rows = run_grid(load_grid(write(tmp_path, GRID)), tmp_path / "out")
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
    expected = _by_hand(tmp_path / "out" / "results.csv")
    with open(tmp_path / "out" / "worst_case.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(expected) == 4  # 2 rules x 1 fraction x 2 alphas
    for line in table:
        worst, mean, std = expected[(line["aggregator"], float(line["fraction"]), float(line["alpha"]))]
        assert line["worst_attack"] == worst and line["seeds"] == "2" and line["missing"] == "0"
        assert float(line["worst_test_error_mean"]) == pytest.approx(mean, abs=1e-6)
        assert float(line["worst_test_error_std"]) == pytest.approx(std, abs=1e-6)
    md = (tmp_path / "out" / "WORST_CASE.md").read_text()
    assert "Dirichlet alpha = 0.1" in md and "Dirichlet alpha = 1" in md
    mean_01 = expected[("mean", 0.2, 0.1)]
    assert f"{mean_01[1]:.3f} ± {mean_01[2]:.3f} ({mean_01[0]})" in md
    assert (tmp_path / "out" / "worst_case.png").stat().st_size > 1000
    # --plot-only redraws it from results.csv alone
    for name in ("worst_case.csv", "WORST_CASE.md", "worst_case.png"):
        (tmp_path / "out" / name).unlink()
    assert main(["grid", "--plot-only", "--out", str(tmp_path / "out")]) == 0
    assert worst_case(read_results(tmp_path / "out" / "results.csv")) == worst_case(rows)
    assert (tmp_path / "out" / "WORST_CASE.md").read_text() == md.replace("# grid\n\n", "# out\n\n")


def test_failed_cells_are_counted_and_the_clean_run_is_no_attack():
    def row(attack, seed, err, status="ok"):
        return {"aggregator": "krum", "attack": attack, "fraction": 0.0 if attack == "none" else 0.3, "alpha": None,
                "byzantine": 0 if attack == "none" else 3, "seed": seed, "status": status,
                "test_error": err if status == "ok" else None}

    rows = [row("none", 0, 0.9), row("alie", 0, 0.2), row("alie", 1, 0.4), row("ipm", 0, 0.25),
            row("ipm", 1, None, status="error")]
    (line,) = worst_case(rows)
    assert line["worst_attack"] == "alie" and line["worst_test_error_mean"] == pytest.approx(0.3)
    assert line["worst_test_error_std"] == pytest.approx(0.1) and line["missing"] == 1
    assert line["clean_test_error"] == pytest.approx(0.9) and line["alpha"] is None
    assert "0.300 ± 0.100 (alie), 1 failed" in worst_case_markdown([line])


@pytest.mark.parametrize("name", ["worst-case-synthetic", "worst-case-mnist"])
def test_the_worst_case_grids_cover_every_rule_and_attack(name):
    from learningchain.config.names import KNOWN

    spec = load_grid(Path(__file__).resolve().parents[2] / f"src/learningchain/experiments/grids/{name}.toml")
    # every rule but mda (genesis refuses its subset search at K >= 30, f = the Byzantine count);
    # every attack, but the backdoor on a data set without images
    image_only = set() if spec.base.get("dataset") == "mnist" else {"backdoor"}
    assert sorted(spec.aggregators) == sorted(set(KNOWN["aggregator"]) - {"mda"})
    assert sorted(spec.attacks) == sorted(set(KNOWN["attack"]) - image_only)
    assert len(spec.fractions) == 3 and spec.alphas == (0.1, 1.0) and spec.seeds == (0, 1, 2)
    rules, attacks = len(spec.aggregators), len(spec.attacks)
    assert len(grid_cells(spec)) == 3 * 2 * rules * (1 + 3 * attacks)
