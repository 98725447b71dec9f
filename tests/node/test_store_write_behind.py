"""A chain store that writes behind (SQLiteStore(write_behind=True)): the same file
as a store that writes at once, reads that see every block added, failures that
surface, and checkpoints never ahead of the chain."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from learningchain.errors import StoreError
from learningchain.experiments.checkpoint import CHECKPOINT, Checkpointer
from learningchain.node import Node, SQLiteStore
from learningchain.node import store as store_mod
from learningchain.node.verify import verify_chain

from ..helpers import genesis_for, small_params
from .test_pruning import DEPTH, grow


def _rows(path):
    db = sqlite3.connect(str(path))
    try:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in ("blocks", "canonical", "meta")}
    finally:
        db.close()


def _params(**over):
    return small_params(dim=5, model={"kind": "logistic", "inputs": 4, "classes": 2}, **over)


def _feed(node, genesis, n=8, fork_at=3):
    """n blocks on one branch and a heavier side branch from ``fork_at`` (a reorg)."""
    parent, chain = genesis, [genesis]
    for i in range(n):
        block = grow(node, parent, seed=200 + i)
        node.on_block(block)
        parent = block
        chain.append(block)
    side = chain[fork_at]
    for i in range(n - fork_at + 1):  # one longer: the head moves to it
        block = grow(node, side, seed=900 + i)
        node.on_block(block)
        side = block
    return side


@pytest.mark.parametrize("prune", [False, True])
def test_writing_behind_leaves_the_same_file_as_writing_at_once(tmp_path, prune):
    params = _params(finality_depth=DEPTH) if prune else _params()
    genesis = genesis_for(params)
    files = {}
    for behind in (False, True):
        path = tmp_path / f"behind-{behind}.sqlite"
        node = Node(genesis, store=SQLiteStore(path, write_behind=behind), prune=prune)
        head = _feed(node, genesis)
        assert node.store.head_hash() == head.hash
        node.store.close()
        files[behind] = _rows(path)
        assert verify_chain(path).ok
    assert files[True] == files[False]
    assert len(files[True]["blocks"]) == 1 + 8 + 6


def test_reads_see_every_block_added_while_the_writer_is_busy(tmp_path, monkeypatch):
    params = _params()
    genesis = genesis_for(params)
    gate = threading.Event()
    real = store_mod.encode_stored_body

    def slow(block):
        gate.wait(10)
        return real(block)

    store = SQLiteStore(tmp_path / "chain.sqlite", write_behind=True, queue_blocks=4)
    node = Node(genesis, store=store)
    monkeypatch.setattr(store_mod, "encode_stored_body", slow)
    b1 = grow(node, genesis, seed=1)
    node.on_block(b1)
    b2 = grow(node, b1, seed=2)
    node.on_block(b2)
    assert store.get(b1.hash) is b1 and store.get(b2.hash) is b2  # queued: served from memory
    gate.set()
    assert store.head_hash() == b2.hash  # a database read waits for the queue
    assert store.canonical_hash(2) == b2.hash
    store.close()
    assert verify_chain(tmp_path / "chain.sqlite").checked == 2


def test_a_failed_write_is_raised_and_the_file_keeps_the_blocks_before_it(tmp_path, monkeypatch):
    params = _params()
    genesis = genesis_for(params)
    store = SQLiteStore(tmp_path / "chain.sqlite", write_behind=True)
    node = Node(genesis, store=store)
    b1 = grow(node, genesis, seed=1)
    node.on_block(b1)
    store.flush()
    real = store_mod.encode_stored_body

    def broken(block):
        if block.hash == b2.hash:
            raise OSError("disk full")
        return real(block)

    monkeypatch.setattr(store_mod, "encode_stored_body", broken)
    b2 = grow(node, b1, seed=2)
    node.on_block(b2)
    with pytest.raises(StoreError, match="disk full"):
        store.flush()
    b3 = grow(node, b2, seed=3)
    with pytest.raises(StoreError, match="writing a block failed"):
        store.add(b3, 3, head=b3.hash)  # nothing is added after a failure
    with pytest.raises(StoreError):
        store.close()
    report = verify_chain(tmp_path / "chain.sqlite")
    assert report.ok and report.head_hash == b1.hash


class _Backend:
    def __init__(self, node):
        self.node = node

    def checkpoint_state(self):
        return {"head": self.node.head_hash.hex()}, []

    def after_stored(self, fn):
        self.node.store.after_writes(fn)


def test_a_checkpoint_is_written_only_after_the_block_it_names(tmp_path, monkeypatch):
    from learningchain.config import TrainConfig

    params = _params()
    genesis = genesis_for(params)
    path = tmp_path / "chain.sqlite"
    store = SQLiteStore(path, write_behind=True)
    node = Node(genesis, store=store)
    gate = threading.Event()
    real = store_mod.encode_stored_body
    monkeypatch.setattr(store_mod, "encode_stored_body", lambda block: (gate.wait(10), real(block))[1])
    seen = []
    real_write = store_mod.SQLiteStore._write

    def write(self, block, work, head):
        real_write(self, block, work, head)
        seen.append((block.hash, (tmp_path / CHECKPOINT).exists()))

    monkeypatch.setattr(store_mod.SQLiteStore, "_write", write)
    ckpt = Checkpointer(tmp_path, TrainConfig(dataset="synthetic", rounds=2), genesis.hash)
    b1 = grow(node, genesis, seed=1)
    node.on_block(b1)
    ckpt(_Backend(node), [{"round": 1}], 0.1)
    assert not (tmp_path / CHECKPOINT).exists()  # the block is still queued, so is its checkpoint
    gate.set()
    store.flush()
    assert seen == [(b1.hash, False)]  # the block first, then the checkpoint
    assert (tmp_path / CHECKPOINT).exists()
    store.close()
