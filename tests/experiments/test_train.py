"""End-to-end runs through the chain, against the centralized baseline (issue: done-when)."""

import csv
import json

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError, LearningChainError
from learningchain.experiments import report, rundir
from learningchain.experiments.rundir import RunInterrupted
from learningchain.experiments.train import run_training
from learningchain.node import SQLiteStore
from learningchain.node.verify import verify_chain


def run(tmp_path, **kw):
    kw.setdefault("progress", False)
    return run_training(TrainConfig(out=str(tmp_path), force=True, **kw))


@pytest.mark.slow
def test_breast_cancer_without_privacy_reaches_the_baseline(tmp_path):
    s = run(tmp_path, dataset="breast-cancer", no_dp=True, rounds=300)
    assert s["rounds"] == 300 and s["height"] == 300
    assert abs(s["test_error"] - s["baseline_test_error"]) <= 0.03
    assert s["rejected_blocks"] == 0 and s["epsilon_total"] is None
    assert verify_chain(tmp_path).ok


@pytest.mark.slow
def test_breast_cancer_with_two_gaussian_byzantine_holders_stays_near_the_baseline(tmp_path):
    s = run(tmp_path, dataset="breast-cancer", no_dp=True, rounds=300, byzantine=2, attack="gaussian")
    assert abs(s["test_error"] - s["baseline_test_error"]) <= 0.05
    assert len(s["byzantine_holders"]) == 2


@pytest.mark.slow
def test_synthetic_with_five_of_thirty_byzantine_holders_stays_near_the_baseline(tmp_path):
    s = run(tmp_path, dataset="synthetic", no_dp=True, rounds=200, byzantine=5)
    assert s["holders"] == 30 and s["miners"] == 30
    assert abs(s["test_error"] - s["baseline_test_error"]) <= 0.05
    assert verify_chain(tmp_path).ok


def test_run_directory_has_every_artifact(tmp_path):
    s = run(tmp_path, dataset="breast-cancer", rounds=5, epsilon=0.3)
    for name in ("summary.json", "metrics.csv", "curve.png", "chain.sqlite", "model.npy", "model.json"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_error", "baseline_test_error", "rounds", "height", "rejected_blocks", "epsilon_per_round",
                "epsilon_total", "wall_seconds"):
        assert key in summary
    assert summary["epsilon_per_round"] == 0.3 and summary["epsilon_total"] == pytest.approx(1.5)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4, 5]
    assert {"round", "test_error", "train_loss", "selected_byzantine"} <= set(rows[0])
    model = np.load(tmp_path / "model.npy", allow_pickle=False)
    assert model.shape == (31,)


def test_the_reported_model_is_the_head_block_model(tmp_path):
    s = run(tmp_path, dataset="breast-cancer", rounds=4, epsilon=1.0)
    store = SQLiteStore(tmp_path / "chain.sqlite", create=False)
    head = store.get(store.head_hash())
    assert np.array_equal(head.model, np.load(tmp_path / "model.npy"))
    assert head.height == s["height"] == 4


def test_same_seed_gives_the_same_chain(tmp_path):
    a = run(tmp_path / "a", dataset="breast-cancer", rounds=6, epsilon=0.5, byzantine=1)
    b = run(tmp_path / "b", dataset="breast-cancer", rounds=6, epsilon=0.5, byzantine=1)
    c = run(tmp_path / "c", dataset="breast-cancer", rounds=6, epsilon=0.5, byzantine=1, seed=1)
    assert a["head_hash"] == b["head_hash"] != c["head_hash"]


def test_target_error_stops_the_run_early(tmp_path):
    s = run(tmp_path, dataset="breast-cancer", no_dp=True, rounds=200, target_error=0.1)
    assert s["stopped_by"] == "target-error" and s["rounds"] < 200 and s["test_error"] <= 0.1


def test_an_existing_run_is_not_overwritten_without_force(tmp_path):
    run(tmp_path, dataset="breast-cancer", rounds=2)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_training(TrainConfig(dataset="breast-cancer", rounds=2, out=str(tmp_path), progress=False))


@pytest.mark.parametrize("bad,match", [
    ({"dataset": "cifar"}, "unknown dataset"),
    ({"holders": 0}, "positive integer"),
    ({"byzantine": 5, "holders": 3}, "must be below holders"),
    ({"byzantine": 3, "holders": 3}, "at least one data holder must be honest"),
    ({"byzantine": 10}, "must be below holders \\(10\\)"),  # breast-cancer's default K
    ({"rpc_url": "http://127.0.0.1:8545"}, "applies to backend ethereum only"),
    ({"epsilon": float("nan")}, "finite"),
    ({"aggregator": "median-of-means"}, "unknown aggregator"),
    ({"attack": "teleport", "byzantine": 1}, "unknown attack"),
])
def test_bad_options_are_refused_with_a_clear_error(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        run(tmp_path, **{"dataset": "breast-cancer", "rounds": 2, **bad})


def test_fresh_identities_give_a_new_pseudo_identity_every_round(tmp_path):
    run(tmp_path, dataset="breast-cancer", rounds=3, epsilon=1.0, fresh_identities=True)
    store = SQLiteStore(tmp_path / "chain.sqlite", create=False)
    ids = [m.identity for b in store.canonical_blocks(1) for m in b.messages]
    assert len(ids) == 30 and len(set(ids)) == 30


def _files(path):
    """Every file under ``path`` with its bytes' hash."""
    import hashlib

    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


TINY = dict(dataset="synthetic", holders=4, rounds=3, difficulty=0, progress=False)


def test_force_writes_beside_the_old_run_and_swaps_it_in_at_the_end(tmp_path):
    out = tmp_path / "run"
    run_training(TrainConfig(out=str(out), **dict(TINY, rounds=2)))
    before = _files(out)
    seen = []

    def check(row):  # while the new run goes, the old one is whole and the new one is elsewhere
        seen.append(_files(out) == before and any(tmp_path.glob(".run.new-*")))

    s = run_training(TrainConfig(out=str(out), force=True, **TINY), on_round=check)
    assert seen == [True, True, True]
    assert s["out"] == str(out) and s["rounds"] == 3 and not s["interrupted"]
    assert json.loads((out / "summary.json").read_text())["rounds"] == 3
    assert verify_chain(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left aside


def test_a_failure_during_a_forced_run_leaves_the_old_run_untouched(tmp_path):
    out = tmp_path / "run"
    run_training(TrainConfig(out=str(out), **TINY))
    before = _files(out)

    def fail(row):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        run_training(TrainConfig(out=str(out), force=True, **dict(TINY, seed=7)), on_round=fail)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _interrupt_at(n):
    def hook(row):
        if row["round"] == n:
            raise KeyboardInterrupt
    return hook


def test_an_interrupted_run_keeps_its_rounds_marked_interrupted(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as info:
        run_training(TrainConfig(out=str(out), **dict(TINY, rounds=5)), on_round=_interrupt_at(2))
    assert info.value.summary["out"] == str(out) and info.value.kept is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["stopped_by"] == "interrupted"
    assert summary["rounds"] == summary["height"] == 2
    assert [int(r["round"]) for r in csv.DictReader(open(out / "metrics.csv"))] == [1, 2]
    assert verify_chain(out).ok
    with pytest.raises(ConfigError, match="interrupted run; pass --force"):
        run_training(TrainConfig(out=str(out), **TINY))
    assert not run_training(TrainConfig(out=str(out), force=True, **TINY))["interrupted"]


def test_an_interrupted_forced_run_restores_the_old_run_and_keeps_the_new_one_beside_it(tmp_path):
    out = tmp_path / "run"
    run_training(TrainConfig(out=str(out), **TINY))
    before = _files(out)
    with pytest.raises(RunInterrupted) as info:
        run_training(TrainConfig(out=str(out), force=True, **dict(TINY, rounds=5, seed=3)),
                     on_round=_interrupt_at(1))
    assert _files(out) == before
    kept = [p for p in tmp_path.iterdir() if p.name != "run"]
    assert len(kept) == 1 and kept[0].name.startswith("run.interrupted-")
    assert info.value.summary["out"] == str(kept[0]) and info.value.kept == out
    partial = json.loads((kept[0] / "summary.json").read_text())
    assert partial["interrupted"] is True and partial["rounds"] == 1


def test_force_refuses_to_replace_the_current_directory(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_training(TrainConfig(out=str(out), **TINY))
    before = _files(out)
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError, match="current directory"):
        run_training(TrainConfig(out=".", force=True, **TINY))
    assert _files(out) == before


def test_ctrl_c_during_the_baseline_keeps_the_rounds_done(tmp_path, monkeypatch):
    def interrupted_baseline(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "train_centralized", interrupted_baseline)
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "run"), **TINY))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["interrupted"] and summary["rounds"] == 3 and summary["baseline_test_error"] is None


def test_a_run_that_cannot_be_moved_into_place_is_a_clear_error_and_the_old_run_stays(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_training(TrainConfig(out=str(out), **TINY))
    before = _files(out)
    real = rundir.os.rename

    def rename(src, dst):
        if ".new-" in str(src):
            raise OSError(18, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(rundir.os, "rename", rename)
    with pytest.raises(LearningChainError, match="could not move the finished run"):
        run_training(TrainConfig(out=str(out), force=True, **dict(TINY, seed=9)))
    monkeypatch.undo()
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
