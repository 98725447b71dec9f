"""Every key `learningchain train` honours changes what a small run does: its
genesis, its chain, its summary, or the files and output it leaves."""

import csv
from pathlib import Path

import pytest
import torch

from learningchain.config import TrainConfig
from learningchain.experiments.train import build_chain_setup, run_training

from .keys import TRAIN, TRAIN_TESTED_ELSEWHERE

SMALL = {"dataset": "breast-cancer", "holders": 4, "rounds": 2, "difficulty": 2}
_SUMMARY = ("head_hash", "genesis_hash", "height", "miners", "byzantine_holders", "stopped_by", "rejected_by_reason",
            "rejected_blocks", "epsilon_total", "delta_tight", "heaviest_chain_accepted_by_honest", "rewards",
            "final_check")


def _run(tmp_path, tag: str, values: dict, capfd) -> dict:
    """What a run did, as far as a user can see it."""
    values = {**SMALL, **values}
    values.setdefault("out", str(tmp_path / tag))
    torch.set_num_threads(1)
    summary = run_training(TrainConfig(**values))
    out = Path(summary["out"])
    with open(out / "metrics.csv") as fh:
        metrics = list(csv.DictReader(fh))
    seen = {k: str(summary.get(k)) for k in _SUMMARY}
    return {**seen, "generator": summary["privacy"].get("generator"), "files": sorted(p.name for p in out.iterdir()),
            "in_harness_dir": out == tmp_path / tag, "evaluated": sum(1 for r in metrics if r["test_error"]),
            "threads": torch.get_num_threads(),
            "printed": bool(capfd.readouterr().err)}


def _genesis(values: dict, without: str = ""):
    small = {k: v for k, v in SMALL.items() if k != without}  # the key's own default, for a key SMALL sets
    return build_chain_setup(TrainConfig(**{**small, **values})).genesis.hash


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """A run sets torch's thread count (the threads key); later tests get the conftest's one back."""
    yield
    torch.set_num_threads(1)


HONOURED = sorted(k for k in TRAIN if "train" in TrainConfig.__dataclass_fields__[k].metadata["honoured_by"]
                  and k not in TRAIN_TESTED_ELSEWHERE)


@pytest.mark.slow
@pytest.mark.parametrize("name", HONOURED)
def test_every_key_train_honours_changes_what_the_run_does(name, tmp_path, capfd):
    value, extra = TRAIN[name]
    value = str(tmp_path / "elsewhere") if value == "OUT" else value
    if isinstance(value, list):
        value = tuple(value)
    extra = {"progress": False, **extra} if name != "progress" else extra
    if _genesis(extra, without=name) != _genesis({**extra, name: value}):
        return  # a key hashed into genesis: every node and every holder sees it
    before = _run(tmp_path, "before", extra, capfd)
    after = _run(tmp_path, "after", {**extra, name: value}, capfd)
    assert before != after, f"{name} = {value!r} changes nothing a run shows"
