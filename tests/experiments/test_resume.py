"""train --resume: an interrupted native run continues from its chain and checkpoint
and ends exactly where the uninterrupted run ends (issue: resume)."""

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments.checkpoint import CHECKPOINT, read_checkpoint
from learningchain.experiments.rundir import RunInterrupted
from learningchain.experiments.train import resume_training, run_training
from learningchain.node import SQLiteStore
from learningchain.parties import build_parties
from learningchain.parties.miners import build_miners
from learningchain.network.simulation import InProcessNetwork

CASES = {
    "synthetic-byzantine-fresh-ids": dict(dataset="synthetic", rounds=12, epsilon=0.5, byzantine=3,
                                         fresh_identities=True),
    "breast-cancer-gaussian-median": dict(dataset="breast-cancer", rounds=9, mechanism="gaussian",
                                          aggregator="median", byzantine=1, attack="sign-flip"),
}


def interrupt_at(k):
    def on_round(row):
        if row["round"] == k:
            raise KeyboardInterrupt

    return on_round


def metrics(path: Path) -> list:
    rows = list(csv.DictReader(open(path / "metrics.csv")))
    for r in rows:
        del r["seconds"]  # wall time
    return rows


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_interrupted_and_resumed_ends_as_the_uninterrupted_run(tmp_path, name):
    options = dict(CASES[name], progress=False)
    full = run_training(TrainConfig(out=str(tmp_path / "full"), **options))
    with pytest.raises(RunInterrupted) as info:
        run_training(TrainConfig(out=str(tmp_path / "cut"), **options), on_round=interrupt_at(4))
    assert info.value.summary["interrupted"] and info.value.summary["rounds"] == 4
    assert (tmp_path / "cut" / CHECKPOINT).exists()
    resumed = resume_training(tmp_path / "cut")
    assert resumed["head_hash"] == full["head_hash"] and resumed["rounds"] == full["rounds"]
    assert not resumed["interrupted"] and resumed["out"] == str(tmp_path / "cut")
    assert np.array_equal(np.load(tmp_path / "cut" / "model.npy"), np.load(tmp_path / "full" / "model.npy"))
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "full")
    for key in ("test_error", "train_loss", "rejected_by_reason", "rejected_messages", "selected_byzantine_total",
                "mining_tries", "epsilon_total", "rewards"):
        assert resumed[key] == full[key], key


def test_a_block_written_after_the_last_checkpoint_is_made_again(tmp_path):
    """As after a SIGKILL between storing a block and writing the checkpoint."""
    options = dict(CASES["synthetic-byzantine-fresh-ids"], progress=False)
    full = run_training(TrainConfig(out=str(tmp_path / "full"), **options))
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "cut"), **options), on_round=interrupt_at(6))
    # put the checkpoint of round 5 in its place (an independent run stopped at 5 writes the
    # same one): the store then holds one block more than the checkpoint names
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "five"), **options), on_round=interrupt_at(5))
    os.replace(tmp_path / "five" / CHECKPOINT, tmp_path / "cut" / CHECKPOINT)
    os.replace(tmp_path / "five" / "checkpoint-messages.bin", tmp_path / "cut" / "checkpoint-messages.bin")
    doc, _ = read_checkpoint(tmp_path / "cut")
    store = SQLiteStore(tmp_path / "cut" / "chain.sqlite", create=False)
    try:
        assert doc["round"] == 5 and store.get(store.head_hash()).height == 6
        assert store.canonical_hash(5).hex() == doc["state"]["head"]
    finally:
        store.close()
    resumed = resume_training(tmp_path / "cut")
    assert resumed["head_hash"] == full["head_hash"]


def test_a_run_killed_outright_is_found_beside_its_out_directory(tmp_path):
    options = dict(CASES["synthetic-byzantine-fresh-ids"], progress=False)
    full = run_training(TrainConfig(out=str(tmp_path / "full"), **options))
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "cut"), **options), on_round=interrupt_at(3))
    # what a SIGKILL leaves: the temporary directory of a process that is gone
    os.rename(tmp_path / "cut", tmp_path / ".cut.new-999999999")
    (tmp_path / ".cut.new-999999999" / "summary.json").unlink()
    resumed = resume_training(tmp_path / "cut")
    assert resumed["head_hash"] == full["head_hash"]
    assert (tmp_path / "cut" / "summary.json").exists() and not (tmp_path / ".cut.new-999999999").exists()


def test_nothing_to_resume_is_refused_and_a_failed_resume_leaves_the_run_where_it_was(tmp_path):
    with pytest.raises(ConfigError, match="no such run"):
        resume_training(tmp_path / "nothing")
    done = run_training(TrainConfig(out=str(tmp_path / "done"), dataset="synthetic", rounds=3, progress=False))
    with pytest.raises(ConfigError, match="finished run"):
        resume_training(tmp_path / "done")
    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "cut"), dataset="synthetic", rounds=6, progress=False),
                     on_round=interrupt_at(2))
    doc = json.loads((tmp_path / "cut" / CHECKPOINT).read_text())
    doc["genesis"] = "00" * 32
    (tmp_path / "cut" / CHECKPOINT).write_text(json.dumps(doc))
    before = sorted(p.name for p in (tmp_path / "cut").iterdir())
    with pytest.raises(Exception, match="genesis"):
        resume_training(tmp_path / "cut")
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == before
    assert done["rounds"] == 3


def test_messages_waiting_on_the_head_are_carried_by_the_checkpoint():
    cfg = TrainConfig(dataset="synthetic", holders=6, rounds=4, epsilon=1.0).resolved()

    def network():
        parties = build_parties(cfg)
        miners, _ = build_miners(cfg, parties.genesis, None)
        return InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(3),
                                attacks=parties.attacks)

    a = network()
    a.step()
    head = a.head
    assert a.answered.claim(head.hash)  # the holders answer the head, no block has taken them yet
    for msg in a.holder_messages(head):
        a.broadcast_message(msg)
    state, pending = a.checkpoint_state()
    assert len(pending) == 6
    b = network()
    b.restore_state(json.loads(json.dumps(state)), [head], pending)
    assert b.head.hash == head.hash and head.hash in b.answered
    assert Counter(m.hash for m in b.reference.mempool.for_base(head.hash)) == Counter(m.hash for m in pending)
    assert a.step().head.hash == b.step().head.hash  # and they go on alike


@pytest.mark.slow
def test_train_killed_with_sigkill_halfway_resumes_to_the_uninterrupted_head(tmp_path):
    """The issue's done-when: `learningchain train ... --out DIR` killed with SIGKILL
    halfway, then `learningchain train --resume DIR`, ends on the uninterrupted run's head."""
    import signal
    import subprocess
    import sys
    import time

    options = ["--dataset", "synthetic", "--rounds", "120", "--epsilon", "0.5", "--byzantine", "4"]
    full = run_training(TrainConfig(out=str(tmp_path / "full"), dataset="synthetic", rounds=120, epsilon=0.5,
                                    byzantine=4, progress=False))
    cmd = [sys.executable, "-m", "learningchain", "train", *options, "--out", str(tmp_path / "run"), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reached = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for ck in tmp_path.glob(".run.new-*/" + CHECKPOINT):
                try:
                    reached = json.loads(ck.read_text())["round"]
                except (OSError, ValueError, KeyError):
                    pass
            if reached >= 40:
                break
            time.sleep(0.02)
        assert proc.poll() is None and reached >= 40, f"the run never reached round 40 ({reached})"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "run").exists()
    out = subprocess.run([sys.executable, "-m", "learningchain", "train", "--resume", str(tmp_path / "run"),
                          "--quiet", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    resumed = json.loads(out.stdout)
    assert resumed["head_hash"] == full["head_hash"] and resumed["rounds"] == 120
    assert metrics(tmp_path / "run") == metrics(tmp_path / "full")
    refused = subprocess.run([sys.executable, "-m", "learningchain", "train", "--resume", str(tmp_path / "run"),
                              "--rounds", "5"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "drop --rounds" in refused.stderr
