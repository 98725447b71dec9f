"""A run whose genesis fixes a finality depth may keep a pruned chain.sqlite: the
same chain (pruning is local, never consensus), message bodies only near the head,
and `chain verify` names the range it could check by header only."""

import sqlite3

import pytest

from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments.train import run_training

SMALL = dict(dataset="breast-cancer", holders=4, rounds=8, difficulty=2, progress=False, finality_depth=2)


def _bodies(path) -> int:
    """Blocks whose message bodies the store still holds (from the store's own accessor)."""
    from learningchain.node.store import SQLiteStore

    store = SQLiteStore(path)
    try:
        return sum(store.has_body(store.canonical_hash(h)) for h in range(1, store.canonical_length()))
    finally:
        store.close()


def test_a_pruned_run_keeps_its_head_and_verify_names_the_header_only_range(tmp_path, capsys):
    kept = run_training(TrainConfig(**SMALL, out=str(tmp_path / "kept")))
    pruned = run_training(TrainConfig(**SMALL, prune=True, out=str(tmp_path / "pruned")))
    assert pruned["head_hash"] == kept["head_hash"] and pruned["height"] == kept["height"] == 8
    assert _bodies(tmp_path / "kept" / "chain.sqlite") == 8
    assert _bodies(tmp_path / "pruned" / "chain.sqlite") < 8
    capsys.readouterr()
    assert main(["chain", "verify", str(tmp_path / "pruned")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "checked by header only" in out
    assert main(["chain", "verify", str(tmp_path / "kept")]) == 0
    assert "header only" not in capsys.readouterr().out


def test_the_finality_depth_is_part_of_genesis(tmp_path):
    a = run_training(TrainConfig(**{**SMALL, "rounds": 2}, out=str(tmp_path / "a")))
    b = run_training(TrainConfig(**{**SMALL, "rounds": 2, "finality_depth": None}, out=str(tmp_path / "b")))
    assert a["genesis_hash"] != b["genesis_hash"]


@pytest.mark.parametrize("changes,message", [
    ({"finality_depth": None, "prune": True}, "prune needs finality_depth"),
    ({"prune": True, "keep_chain": False}, "prune applies to chain.sqlite"),
    ({"finality_depth": 0}, "finality_depth must be"),
])
def test_pruning_without_what_it_needs_is_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**SMALL, **changes}).resolved()


def test_a_pruned_run_counts_the_same_rewards_as_a_kept_one(tmp_path):
    # the messages say who paid; a pruned store counts each block just before it drops them
    for mode in ({"mode": "split", "block_reward": 1_000_000}, {"mode": "fee", "fee_per_message": 7}):
        kept = run_training(TrainConfig(**SMALL, rewards=mode, out=str(tmp_path / f"k{mode['mode']}")))
        pruned = run_training(TrainConfig(**SMALL, rewards=mode, prune=True, out=str(tmp_path / f"p{mode['mode']}")))
        assert pruned["rewards"] == kept["rewards"] and kept["rewards"]["paid_by_holders"] > 0
