"""train --resume refuses what it cannot continue, and a refused resume writes nothing:
a stored chain that `chain verify` refuses, a checkpoint whose head or rows do not match
the chain, and a damaged checkpoint (each field named) leave the run directory, its
checkpoint and chain.sqlite byte for byte as they were."""

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.config import TrainConfig
from learningchain.errors import LearningChainError, StoreError
from learningchain.experiments.checkpoint import CHECKPOINT
from learningchain.experiments.rundir import RunInterrupted
from learningchain.experiments.train import resume_training, run_training
from learningchain.node.store import open_readonly
from learningchain.node.verify import verify_chain

OPTIONS = dict(dataset="synthetic", holders=4, rounds=6, difficulty=2, progress=False)


def _stop_at(k):
    def on_round(row):
        if row["round"] == k:
            raise KeyboardInterrupt

    return on_round


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An interrupted run (4 of 6 rounds) and a run whose summary is gone after its
    last round (as a run killed after its last checkpoint leaves it)."""
    base = tmp_path_factory.mktemp("resume-refused")
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(base / "cut"), **OPTIONS), on_round=_stop_at(4))
    run_training(TrainConfig(out=str(base / "ended"), **OPTIONS))
    (base / "ended" / "summary.json").unlink()
    return base


def _copy(runs: Path, name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(runs / name, run)
    return run


def _snapshot(run: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}


def _edit_checkpoint(run: Path, change) -> None:
    doc = json.loads((run / CHECKPOINT).read_text())
    change(doc)
    (run / CHECKPOINT).write_text(json.dumps(doc))


def _tamper_block_2(run: Path) -> None:
    """Block 2 gets block 3's body: its header no longer matches its messages."""
    db = sqlite3.connect(run / "chain.sqlite")
    body3 = db.execute("SELECT body FROM blocks WHERE height=3").fetchone()[0]
    db.execute("UPDATE blocks SET body=? WHERE height=2", (body3,))
    db.commit()
    db.close()


@pytest.mark.parametrize("name", ["cut", "ended"])
def test_a_stored_chain_that_chain_verify_refuses_is_not_continued(runs, tmp_path, name):
    run = _copy(runs, name, tmp_path)
    _tamper_block_2(run)
    verdict = verify_chain(run).describe()
    assert verdict.startswith("INVALID at height 2")
    before = _snapshot(run)
    with pytest.raises(StoreError, match=r"invalid at height 2 \(bad-messages-root"):
        resume_training(run)
    assert _snapshot(run) == before  # summary.json, if any, still the interrupted run's
    assert verify_chain(run).describe() == verdict


def _set_head_to_genesis(doc):
    store = open_readonly(doc.pop("_run"))
    try:
        doc["state"]["head"] = store.canonical_hash(0).hex()
    finally:
        store.close()


@pytest.mark.parametrize("change,match", [
    (lambda doc: doc["state"].__setitem__("holders", doc["state"]["holders"][:1]), "state.holders holds 1"),
    (_set_head_to_genesis, "head is at height 0, its last metrics row at height 4"),
    (lambda doc: doc["state"].__setitem__("head", "ab" * 32), "not a block of the stored chain"),
], ids=["holders", "head-genesis", "head-unknown"])
def test_a_refused_resume_leaves_chain_sqlite_byte_identical(runs, tmp_path, change, match):
    run = _copy(runs, "cut", tmp_path)
    store = open_readonly(run)
    canonical = [store.canonical_hash(h) for h in range(store.canonical_length())]
    store.close()
    assert len(canonical) == 5  # genesis and the blocks of rounds 1 to 4

    def edit(doc):
        doc["_run"] = run
        change(doc)
        doc.pop("_run", None)

    _edit_checkpoint(run, edit)
    before = _snapshot(run)
    with pytest.raises(LearningChainError, match=match):
        resume_training(run)
    assert _snapshot(run) == before
    store = open_readonly(run)
    try:
        assert [store.canonical_hash(h) for h in range(store.canonical_length())] == canonical
    finally:
        store.close()


def _fake_error(doc):
    doc["rows"][-1]["test_error"] = 0.0


def _drop_row(doc):
    doc["rows"].pop()


@pytest.mark.parametrize("change,field", [
    (lambda doc: doc.pop("state"), "state is missing"),
    (lambda doc: doc["state"].__setitem__("head", "zz"), "state.head is a str"),
    (lambda doc: doc.__setitem__("elapsed", "x"), "elapsed is a str"),
    (lambda doc: doc["state"]["holders"][0].__setitem__("key", "zz"), r"state.holders\[0\].key"),
    (lambda doc: doc["state"]["holders"][0].__setitem__("key", "00" * 32), r"state.holders\[0\].key is not a valid"),
    (lambda doc: doc["state"]["holders"][0].__setitem__("spent", "abc"), r"state.holders\[0\].spent"),
    (lambda doc: doc["state"]["holders"][1].__setitem__("rng", [1]), r"state.holders\[1\].rng"),
    (lambda doc: doc.__setitem__("rows", 5), "rows is an int"),
    (lambda doc: doc["rows"].__setitem__(0, "x"), r"rows\[0\] is a str"),
    (lambda doc: doc["rows"][1].__setitem__("round", 7), r"rows\[1\].round is 7, not 2"),
    (lambda doc: doc["rows"][1].__setitem__("test_error", [0]), r"rows\[1\].test_error"),
    (_drop_row, "holds 3 rows, the checkpoint is of round 4"),
    (_fake_error, "row 4 records test error 0.0, the model on the chain at height 4 has"),
    (lambda doc: doc["state"].__setitem__("rng", {"bit_generator": "X"}), "state.rng is a dict"),
    (lambda doc: doc["state"].__setitem__("answered", ["zz"]), r"state.answered\[0\]"),
    (lambda doc: doc["state"].__setitem__("mining_tries", -1), "state.mining_tries"),
    (lambda doc: doc["state"].__setitem__("rejected_by_node", {"a": 1}), "state.rejected_by_node"),
    (lambda doc: doc.__setitem__("config", []), "config is a list"),
], ids=["no-state", "head-hex", "elapsed", "key-hex", "key-zero", "spent", "holder-rng", "rows-int", "row-str",
        "row-round", "row-error", "rows-short", "rows-fake-error", "rng", "answered", "mining-tries", "by-node",
        "config-list"])
def test_a_damaged_checkpoint_is_refused_naming_the_field(runs, tmp_path, change, field):
    run = _copy(runs, "cut", tmp_path)
    _edit_checkpoint(run, change)
    before = _snapshot(run)
    with pytest.raises(LearningChainError, match=field):
        resume_training(run)
    assert _snapshot(run) == before


def test_the_cli_reports_a_damaged_checkpoint_without_a_traceback(runs, tmp_path):
    run = _copy(runs, "cut", tmp_path)
    _edit_checkpoint(run, lambda doc: doc["state"]["holders"][0].pop("sent"))
    out = subprocess.run([sys.executable, "-m", "learningchain", "train", "--resume", str(run), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert r"state.holders[0].sent is missing" in out.stderr
