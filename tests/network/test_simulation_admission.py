"""Shared admission in the in-process network: honest nodes that share one mempool
take exactly the decisions that a separate mempool per node takes."""

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.crypto import PrivateKey
from learningchain.network.simulation import InProcessNetwork
from learningchain.parties import build_miners, build_parties
from learningchain.protocol.message import sign_message


def _network(share: bool, miner_attack: str, **kw) -> InProcessNetwork:
    cfg = TrainConfig(dataset="synthetic", holders=8, miners=6, rounds=12, epsilon=1.0, progress=False,
                      byzantine=2, attack="sybil", attack_options={"identities": 2}, byzantine_miners=2,
                      byzantine_power=0.4, miner_attack=miner_attack, seed=3, **kw).resolved()
    parties = build_parties(cfg)
    miners, _ = build_miners(cfg, parties.genesis, None)
    return InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(7),
                            attacks=parties.attacks, share_admission=share)


def _node_state(node) -> tuple:
    pool = node.mempool
    return (node.head_hash, sorted(node.headers), dict(node.rejected_by_reason), dict(node.rejected_messages),
            list(node.rejected), sorted(node.orphans),
            [(base, sorted(m.hash for m in group.values())) for base, group in pool._by_base.items()],
            list(pool._seen))


def _round_state(result) -> tuple:
    return (result.winner, result.proposed, result.head.hash, result.head_changed, dict(result.rejections),
            dict(result.messages_rejected), result.mining_tries)


def _hostile_messages(net: InProcessNetwork) -> list:
    """A second message from an enrolled holder for the head (duplicate identity), one
    from a stranger (admitted: this chain enrols no one), one for a wrong round and one for an unknown base."""
    head = net.head
    q = np.zeros(net.reference.params.dim, dtype=np.int32)
    q[0] = 1 << net.reference.params.quant_bits
    stranger = PrivateKey.generate(np.random.default_rng(99))
    holder = net.holders[0].key
    return [sign_message(holder, round=head.height, base=head.hash, norm=0.5, q=q),
            sign_message(stranger, round=head.height, base=head.hash, norm=0.5, q=q),
            sign_message(stranger, round=head.height + 1, base=head.hash, norm=0.5, q=q),
            sign_message(holder, round=head.height, base=b"\x07" * 32, norm=0.5, q=q)]


@pytest.mark.parametrize("miner_attack,kw", [("forged-messages", {}), ("withhold", {}),
                                             ("drop-honest", {"min_inclusion": 0.9})])
def test_shared_admission_decides_as_a_mempool_per_node(miner_attack, kw):
    shared, separate = _network(True, miner_attack, **kw), _network(False, miner_attack, **kw)
    honest = [i for i, m in enumerate(shared.miners) if not m.byzantine]
    assert len({id(shared.miners[i].node.mempool) for i in honest}) == 1  # one pool for the honest nodes
    assert len({id(m.node.mempool) for m in separate.miners}) == len(separate.miners)
    refusals: set = set()
    for r in range(10):
        a, b = shared.step(), separate.step()
        assert _round_state(a) == _round_state(b), f"round {r}"
        if r in (3, 7):
            for msg in _hostile_messages(shared):
                da, db = shared.broadcast_message(msg), separate.broadcast_message(msg)
                reasons = [[(type(x).__name__, getattr(x, "reason", None)) for x in d] for d in (da, db)]
                assert reasons[0] == reasons[1]
                refusals |= {x.reason for acts in db for x in acts if type(x).__name__ == "MessageRefused"}
        for i, (ma, mb) in enumerate(zip(shared.miners, separate.miners)):
            assert _node_state(ma.node) == _node_state(mb.node), f"round {r}, node {i}"
        assert shared.messages_rejected == separate.messages_rejected
    # the hostile messages were refused (the holder's own second message, admitted
    # first, makes its real one a duplicate in the next round)
    assert {"wrong-round", "unknown-base", "duplicate-identity"} <= refusals
    assert separate.messages_rejected["duplicate-identity"] >= 2 * len(honest)
    assert shared.rejected_blocks == separate.rejected_blocks
    assert shared.admission_splits == 0


def test_a_node_that_leaves_its_lead_s_chain_gets_its_own_pool():
    net = _network(True, "wrong-model")
    while net.head.height == 0:
        net.step()
    honest = [m.node for m in net.miners if not m.byzantine]
    pool = honest[0].mempool
    honest[-1].head_hash = honest[-1].genesis_hash  # as if it had not followed the others
    honest[-1].headers = {honest[-1].genesis_hash: honest[-1].genesis.header}
    net._groups_checked = False
    before = list(pool._seen)
    msg = _hostile_messages(net)[1]
    decided = net.broadcast_message(msg)
    assert net.admission_splits == 1
    assert honest[-1].mempool is not pool and honest[0].mempool is pool
    # it decided on its own: the others admitted the message, it does not know the base
    last = [i for i, m in enumerate(net.miners) if m.node is honest[-1]][0]
    assert [a.reason for a in decided[last]] == ["unknown-base"]
    assert msg.hash in pool and msg.hash not in honest[-1].mempool
    assert list(honest[-1].mempool._seen) == before
