"""Memory bounded by the model and the holders, not by the rounds run: a run of a
model with d >= 50,000, its chain kept on disk, stops growing once the windows of
recent bodies (mempool bases, recent block bodies, the store's small cache) are full.
Before, the chain store's cache kept the last 64 blocks whole, messages included, and
then the shared verdict cache held its last 64 blocks (and so their messages) alive."""

import gc

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.train import build_parties
from learningchain.network.simulation import InProcessNetwork
from learningchain.parties import build_miners


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")  # pragma: no cover


@pytest.mark.slow
def test_rss_stops_growing_with_the_rounds(tmp_path):
    cfg = TrainConfig(dataset="synthetic", model="mlp", hidden=(5000,), holders=4, miners=1, no_dp=True,
                      rounds=60, difficulty=2).resolved()
    parties = build_parties(cfg)
    d = parties.params.dim
    assert d >= 50_000
    miners, _ = build_miners(cfg, parties.genesis, tmp_path / "chain.sqlite")
    net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0),
                           attacks=parties.attacks, keep_bodies=4)
    # one round's messages: K messages of d int32 entries (each kept once, in its encoding)
    per_round_mb = cfg.holders * 4 * d / 2**20
    n = 18
    for _ in range(n):
        net.step()
    gc.collect()
    mid = rss_mb()
    for _ in range(n):
        net.step()
    gc.collect()
    end = rss_mb()
    miners[0].node.store.close()
    assert net.head.height == 2 * n
    # what may still grow: allocator noise (before the in-memory stores dropped old models,
    # one model, 8 d bytes, a block)
    allowed = n * 8 * d / 2**20 + 0.25 * n * per_round_mb
    assert end - mid < allowed, (mid, end, allowed, per_round_mb)


def live(cls) -> list:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is cls]


def test_the_messages_alive_are_those_of_the_recent_windows_not_of_every_round(tmp_path):
    """Counted, not measured: after 40 rounds only the messages of the windows (the
    mempool's 16 bases, ``keep_bodies`` recent bodies, the store's cache of 4) are
    alive. Before, the verdict cache held its last 64 blocks, each with its messages."""
    from learningchain.protocol.block import Block
    from learningchain.protocol.message import Message

    # objects left alive by earlier tests in the same process are not this run's
    held = live(Message) + live(Block)  # kept referenced, so that no new object takes one of their ids
    before = {id(o) for o in held}
    cfg = TrainConfig(dataset="synthetic", holders=4, miners=2, no_dp=True, rounds=40, difficulty=2).resolved()
    parties = build_parties(cfg)
    miners, _ = build_miners(cfg, parties.genesis, tmp_path / "chain.sqlite")
    net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0),
                           attacks=parties.attacks, keep_bodies=4)
    for _ in range(40):
        net.step()
    miners[0].node.store.close()
    assert net.head.height == 40
    rounds = {m.round for m in live(Message) if id(m) not in before}
    assert rounds and min(rounds) >= 40 - 18, sorted(rounds)
    with_messages = {b.height for b in live(Block) if b.messages and id(b) not in before}
    assert min(with_messages) >= 40 - 18, sorted(with_messages)
    # the models: the in-memory stores (the second miner's keeps cfg.keep_bodies = 16 bodies, the
    # light client's 4) hold the genesis and the blocks of the last keep_bodies + 2 heights whole,
    # the rest by header (before, every block's model stayed: 41 of them)
    models = {(b.height, id(b.model)) for b in live(Block) if id(b) not in before}
    heights = sorted({height for height, _ in models})
    assert heights == [0] + list(range(40 - cfg.keep_bodies - 1, 41)), heights
    assert len({m for _, m in models}) <= len(heights) + 1  # (the genesis a run builds may be a copy)


# -- the in-memory stores drop the models of blocks deeper than keep_bodies -------------------

def _small_chain(keep, n):
    """A node keeping ``keep`` bodies that accepted ``n`` blocks in a row, and the blocks."""
    from learningchain.node import Node

    from ..helpers import genesis_for, small_params
    from .test_node import grow

    genesis = genesis_for(small_params())
    node = Node(genesis, keep_bodies=keep)
    blocks = [genesis]
    for i in range(n):
        block = grow(node, blocks[-1], 100 + i)
        assert node.on_block(block).new_head
        blocks.append(block)
    return node, blocks


def test_the_in_memory_store_holds_the_models_of_the_kept_depth_only():
    """After 30 blocks with keep_bodies=3 the store holds the genesis and the last 3 + 2
    blocks whole; the rest are known by header (the fork choice's links and work stay).
    Before, every block's model stayed: 31 blocks held."""
    keep, n = 3, 30
    node, blocks = _small_chain(keep, n)
    store = node.store
    held = [b.height for b in blocks if store.get(b.hash) is not None]
    assert held == [0] + list(range(n - keep - 1, n + 1)), held
    assert len({id(store.get(b.hash).model) for b in blocks if store.get(b.hash) is not None}) == keep + 3
    # headers, work and the canonical index are all still there
    assert [h.hash for h, _ in store.entries()] == [b.hash for b in blocks]
    assert [store.canonical_hash(b.height) for b in blocks] == [b.hash for b in blocks]
    assert node.canonical_hashes() == [b.hash for b in blocks]
    assert not store.has_body(blocks[5].hash) and store.has_body(blocks[-1].hash)


def test_a_block_on_a_parent_whose_model_was_dropped_is_refused_not_remembered():
    """A fork on a block held by header only cannot be validated: refused as
    ``beyond-kept-depth`` (not final: the hash stays open), the store and the head
    untouched, never a crash and never accepted. A fork on the deepest parent still
    held is validated and accepted, and an archival node accepts the deep one."""
    from learningchain.errors import InvalidBlock
    from learningchain.node import Node

    from .test_node import grow

    keep, n = 3, 12
    node, blocks = _small_chain(keep, n)
    archive = Node(blocks[0])
    for b in blocks[1:]:
        assert archive.on_block(b).new_head
    deep = grow(archive, blocks[n - keep - 2], 999)  # parent: the newest block held by header only
    assert node.store.get(deep.parent) is None and deep.parent in node.headers
    head, known = node.head_hash, len(list(node.store.entries()))
    with pytest.raises(InvalidBlock) as err:
        node.on_block(deep)
    assert err.value.reason == "beyond-kept-depth"
    assert node.rejected_by_reason["beyond-kept-depth"] == 1 and deep.hash not in node.rejected
    assert node.head_hash == head and deep.hash not in node.headers and len(list(node.store.entries())) == known
    assert deep.hash not in node.orphans
    # a child of it that came first waits as an orphan, and is not connected by the refusal
    child = grow(archive, deep, 998)
    assert node.on_block(child).status == "orphan"
    with pytest.raises(InvalidBlock):
        node.on_block(deep)
    assert child.hash not in node.headers
    # the archival node validates the deep fork
    assert archive.on_block(deep).status == "accepted"
    # one block shallower the parent is held: validated and accepted (a side block)
    shallow = grow(archive, blocks[n - keep - 1], 997)
    assert node.on_block(shallow).status == "accepted" and node.head_hash == head


def test_replay_last_does_not_pass_over_blocks_known_by_header_only():
    """The holders' final check over more blocks than the node holds whole fails with
    a reason, instead of passing on the few it holds; within the kept depth it passes."""
    from learningchain.node.verify import replay_last

    keep, n = 3, 12
    node, blocks = _small_chain(keep, n)
    assert replay_last(node, node.head_hash, keep + 1) == (True, None, "")
    ok, bad, reason = replay_last(node, node.head_hash, keep + 3)
    assert not ok and reason == "beyond-kept-depth" and bad == n - keep - 2


def test_a_resumed_run_that_keeps_one_body_ends_as_the_uninterrupted_one(tmp_path):
    """Resuming replays the stored chain through nodes that drop models as their heads
    move (keep_bodies=1: two models kept): every block still has its parent held, and the
    run ends where the uninterrupted one does."""
    from learningchain.experiments.rundir import RunInterrupted
    from learningchain.experiments.train import resume_training, run_training

    options = dict(dataset="synthetic", rounds=12, no_dp=True, holders=5, keep_bodies=1, progress=False)
    full = run_training(TrainConfig(out=str(tmp_path / "full"), **options))

    def stop(row):
        if row["round"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "cut"), **options), on_round=stop)
    resumed = resume_training(tmp_path / "cut")
    assert full["height"] >= 8
    assert resumed["head_hash"] == full["head_hash"] and resumed["rounds"] == full["rounds"]
    assert resumed["rejected_by_reason"] == full["rejected_by_reason"]
    assert "beyond-kept-depth" not in full["rejected_by_reason"]
