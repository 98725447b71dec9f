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
    # what may still grow: one model (8 d bytes) a block in the in-memory stores, and allocator noise
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
