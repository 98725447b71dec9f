"""The grid runner: config checks, the cells it makes, a real (tiny) grid end to end."""

import csv
import json
from pathlib import Path

import pytest

from learningchain.cli.main import main
from learningchain.errors import ConfigError
from learningchain.experiments.grid import byzantine_count, grid_cells, load_grid, read_results, run_grid

SMOKE = Path(__file__).resolve().parents[2] / "src/learningchain/experiments/grids/smoke.toml"


def write(tmp_path, text):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


BASE = """
[grid]
attacks = ["sign-flip", "alie"]
aggregators = ["krum", "l-nearest"]
fractions = [0.1, 0.3, 0.45]
seeds = [0, 1]

[train]
dataset = "synthetic"
holders = 30
rounds = 3
"""


def test_cells_cover_attacks_rules_fractions_seeds_and_a_clean_row(tmp_path):
    spec = load_grid(write(tmp_path, BASE))
    cells = grid_cells(spec)
    assert len(cells) == 2 * (2 + 3 * 2 * 2)
    assert {c.byzantine for c in cells} == {0, 3, 9, 13}
    krum = [c for c in cells if c.aggregator == "krum" and c.byzantine == 9]
    assert all(c.config["aggregator_options"] == {"f": 9} for c in krum)  # f = the Byzantine count
    assert all("f" not in c.config["aggregator_options"] for c in cells if c.aggregator == "l-nearest")
    assert spec.workers == 2


def test_byzantine_count_never_exceeds_the_fraction():
    assert [byzantine_count(f, 30) for f in (0.1, 0.3, 0.45)] == [3, 9, 13]
    assert [byzantine_count(f, 100) for f in (0.1, 0.3, 0.45)] == [10, 30, 45]


@pytest.mark.parametrize("text,match", [
    (BASE.replace('"alie"]', '"alie", "teleport"]'), "unknown attack 'teleport'"),
    (BASE.replace('"l-nearest"]', '"l-nearest", "average"]'), "unknown aggregator 'average'"),
    (BASE.replace("fractions = [0.1, 0.3, 0.45]", "fractions = [0.5, 1.2]"), "fractions"),
    (BASE.replace("seeds = [0, 1]", "seeds = [0, 1]\nspeed = 3"), "unknown key"),
    (BASE + "byzantine = 4\n", "must not set 'byzantine'"),
    (BASE + "epsilon = -1\n", "epsilon"),
    (BASE + "\n[attack_options.alie]\nzz = 1\n", "bad options for attack 'alie'"),
    (BASE + "\n[aggregator_options.krum]\nl = 1\n", "has no option 'l'"),
    (BASE.replace("seeds = [0, 1]", "seeds = [0, 1]\nf = \"many\""), "f must be"),
    ("[train]\ndataset = 'synthetic'\n", "needs a \\[grid\\] table"),
    (BASE.replace("seeds = [0, 1]", 'seeds = [0, 1]\nclean = "false"'), "clean must be true or false"),
    (BASE.replace("seeds = [0, 1]", "seeds = [0, 1]\nkeep_chains = 1"), "keep_chains must be true or false"),
    (BASE + 'no_dp = "false"\n', "no_dp must be true or false"),
])
def test_bad_grid_configs_are_refused_before_anything_runs(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_grid(write(tmp_path, text))


def test_a_small_grid_runs_on_the_chain_and_resumes(tmp_path):
    spec = load_grid(SMOKE)
    rows = run_grid(spec, tmp_path)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    table = read_results(tmp_path / "results.csv")
    assert {(r["attack"], r["aggregator"]) for r in table} == {
        (a, g) for a in ("none", "sign-flip", "norm-inflation") for g in ("mean", "l-nearest-bounded")}
    for r in table:
        summary = json.loads((tmp_path / "runs" / r["cell"] / "summary.json").read_text())
        assert summary["test_error"] == r["test_error"]  # the CSV reports what the chain run reported
        assert summary["byzantine"] == r["byzantine"] and summary["aggregator"] == r["aggregator"]
        assert not (tmp_path / "runs" / r["cell"] / "chain.sqlite").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/cell.json")}
    again = run_grid(spec, tmp_path)
    assert [r["test_error"] for r in again] == [r["test_error"] for r in rows]
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/cell.json")}


def test_grid_command(tmp_path, capsys):
    assert main(["grid", str(SMOKE), "--out", str(tmp_path), "--quiet", "--workers", "1"]) == 0
    assert "6 cells, 0 failed" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 6
    (tmp_path / "heatmap.png").unlink()
    assert main(["grid", "--plot-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "heatmap.png").exists()
    assert main(["grid", str(tmp_path / "missing.toml")]) == 2
