"""Progress of long commands: ``[i/n] ... (elapsed, ETA)`` lines, and what the end
of a train run says it is doing after its progress bar."""

import io
import re
from pathlib import Path

from learningchain.cli.main import main
from learningchain.cli.progress import Progress, format_duration

LINE = re.compile(r"^\[(\d+)/(\d+)\] .*\(elapsed \S+, (ETA \S+|ETA unknown|done)\)$")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_count_to_the_total_with_an_eta_from_the_items_really_run():
    clock, out = Clock(), io.StringIO()
    bar = Progress(5, stream=out, clock=clock)
    bar.step("reused", reused=True)
    assert bar.eta() is None  # nothing computed yet: no rate to extrapolate
    clock.now = 10.0
    bar.step("first")
    clock.now = 30.0
    bar.step("second")
    assert bar.eta() == 20.0 * 2  # the first item's 10 s included start-up: the second one's 20 s is the rate
    clock.now = 40.0
    bar.step("third")
    bar.step("fourth")
    lines = out.getvalue().splitlines()
    assert [LINE.match(x).group(1, 2) for x in lines] == [(str(i), "5") for i in range(1, 6)]
    assert lines[0].endswith("ETA unknown)") and lines[2] == "[3/5] second  (elapsed 30s, ETA 40s)"
    assert lines[-1].endswith("(elapsed 40s, done)")
    assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"


def test_a_minimum_interval_thins_the_lines_but_keeps_the_last():
    clock, out = Clock(), io.StringIO()
    bar = Progress(100, stream=out, clock=clock, min_interval=10.0)
    for _ in range(100):
        clock.now += 1.0
        bar.step("trial")
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 12 and lines[-1].startswith("[100/100]")
    quiet = io.StringIO()
    Progress(1, stream=quiet, quiet=True).step("x")
    assert quiet.getvalue() == ""


def test_grid_prints_totals_and_eta(tmp_path, capsys):
    grid = tmp_path / "tiny.toml"
    grid.write_text('[grid]\nname = "tiny"\nattacks = ["sign-flip"]\naggregators = ["mean", "median"]\n'
                    'fractions = [0.25]\nworkers = 1\n[train]\ndataset = "synthetic"\nholders = 4\nrounds = 2\n'
                    'difficulty = 0\nkeep_chain = false\n')
    out = tmp_path / "out"
    assert main(["grid", str(grid), "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    steps = [x for x in err if x.startswith("[")]
    assert err[0].startswith("4 cells, 1 at a time")
    assert len(steps) == 4 and all(LINE.match(x) for x in steps), err
    assert "ETA" in steps[0] and steps[-1].startswith("[4/4]")
    assert main(["grid", str(grid), "--out", str(out), "--workers", "1"]) == 0
    again = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[")]
    assert len(again) == 4 and all("(reused)" in x for x in again)


def test_reproduce_prints_totals_and_eta(tmp_path, capsys, monkeypatch):
    import learningchain.experiments.reproduce as rep

    def fake_reproduce(names, *, out, quick, workers, progress, ray=None):
        jobs = rep.figure_jobs(rep.load_figure("fig6"), quick=True, out=Path(out))
        progress(None, 0, len(jobs))
        for i, job in enumerate(jobs, start=1):
            summary = {"test_error": 0.2, "baseline_test_error": 0.1, "wall_seconds": 1.0}
            progress({"job": job, "summary": summary, "cached": False}, i, len(jobs))
        return {}

    monkeypatch.setattr(rep, "reproduce", fake_reproduce)
    assert main(["reproduce", "fig6", "--quick", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [x for x in lines if x.startswith("[")]
    assert lines[0].startswith("9 runs") and len(steps) == 9
    assert all(LINE.match(x) for x in steps) and steps[0].startswith("[1/9] fig6 a LearningChain")


def test_security_sweep_prints_totals(tmp_path, capsys):
    assert main(["security-sweep", "--powers", "0.3", "--s", "1", "--trials", "2", "--rounds", "3",
                 "--out", str(tmp_path)]) == 0
    steps = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[")]
    assert steps and all(LINE.match(x) for x in steps) and steps[-1].startswith("[2/2]")


def test_train_says_what_it_does_after_the_progress_bar(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--difficulty", "0",
                 "--byzantine-miners", "1", "--byzantine-power", "0.3", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    for step in ("centralized baseline: 2 rounds", "final check of the last 6 blocks", "rewards: reading",
                 "writing summary.json"):
        assert step in err, step
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--difficulty", "0",
                 "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert "centralized baseline" not in capsys.readouterr().err
