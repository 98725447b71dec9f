"""The holders' side of a round: every holder's messages in holder order, and
each head answered once, under every driver."""

import numpy as np
import pytest

from learningchain.attacks.miners import make_miner_strategy
from learningchain.config import TrainConfig
from learningchain.network.simulation import InProcessNetwork
from learningchain.node import Node
from learningchain.parties import AnswerOnce, Miner, build_parties, collect_messages


def test_answer_once_claims_a_key_the_first_time_only():
    once = AnswerOnce()
    assert once.claim(b"head-1") and b"head-1" in once
    assert not once.claim(b"head-1")
    assert once.claim(b"head-2") and not once.claim(b"head-2")


def test_answer_once_starts_from_the_heads_already_answered_and_reports_new_ones():
    told = []
    once = AnswerOnce([3, 4], on_claim=told.append)
    assert not once.claim(3) and not once.claim(4)
    assert once.claim(5)
    assert told == [5]


def test_answer_once_remembers_only_the_last_heads():
    once = AnswerOnce(remember=2)
    for key in (1, 2, 3):
        assert once.claim(key)
    assert 1 not in once and 2 in once and 3 in once
    with pytest.raises(ValueError):
        AnswerOnce(remember=0)


def _parties(**kw):
    cfg = TrainConfig(dataset="synthetic", holders=6, rounds=3, epsilon=1.0, progress=False, **kw)
    return build_parties(cfg)


def test_collect_messages_is_in_holder_order_with_each_byzantine_holders_messages_together():
    parties = _parties(byzantine=2, attack="sybil", attack_options={"identities": 3})
    byz_identities: set = set()
    msgs = collect_messages(parties.holders, parties.attacks, parties.genesis, byz_identities)
    per_holder = [3 if h.index in parties.attacks else 1 for h in parties.holders]
    assert len(msgs) == sum(per_holder)
    at = 0
    for holder, count in zip(parties.holders, per_holder):
        group = msgs[at:at + count]
        assert group[0].identity == holder.identities[0]  # each holder's own identity opens its group
        byzantine = holder.index in parties.attacks
        assert all((m.identity in byz_identities) == byzantine for m in group)
        at += count
    assert len(byz_identities) == 2 * 3
    assert all(m.round == 0 and m.base == parties.genesis.hash for m in msgs)


def test_collect_messages_gives_the_same_identities_in_the_same_order_with_or_without_batching():
    a, b = _parties(byzantine=1), _parties(byzantine=1)
    batched = collect_messages(a.holders, a.attacks, a.genesis, set(), batch=True)
    one_by_one = collect_messages(b.holders, b.attacks, b.genesis, set(), batch=False)
    assert [m.identity for m in batched] == [m.identity for m in one_by_one]


def test_the_simulation_sends_the_holders_messages_once_for_a_head_that_does_not_move():
    parties = _parties()
    honest = Node(parties.genesis, name="honest")
    attacker = Node(parties.genesis, name="attacker", validation="header")
    # the attacker always wins and writes blocks honest nodes refuse: the head stays genesis
    miners = [Miner(honest, 0.0), Miner(attacker, 1.0, make_miner_strategy("wrong-model"))]
    net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0))
    sent = []
    real = net.holder_messages
    net.holder_messages = lambda base: sent.append(base.hash) or real(base)
    for _ in range(3):
        res = net.step()
        assert not res.head_changed and res.rejections
    assert sent == [parties.genesis.hash]
    assert len(honest.mempool.for_base(parties.genesis.hash)) == len(parties.holders)


@pytest.mark.parametrize("batch", [True, False])
def test_a_holder_whose_gradient_has_no_direction_abstains_and_the_round_goes_on(batch):
    # Without privacy noise a saturated model gives a gradient of norm exactly 0, which
    # Eq. 11 cannot normalise (a worst-case MNIST grid cell hit it at 45% opposite); that
    # holder sends nothing this round, instead of ending the run for every party.
    parties = _parties(byzantine=1, attack="opposite", no_dp=True)
    quiet = next(h for h in parties.holders if h.index not in parties.attacks)
    quiet.privatize = lambda grad, base: np.zeros_like(grad)
    byz: set = set()
    msgs = collect_messages(parties.holders, parties.attacks, parties.genesis, byz, batch=batch)
    assert quiet.identities[0] not in {m.identity for m in msgs}
    assert len(msgs) == len(parties.holders) - 1 and quiet.sent == 0 and quiet.spent == 0
    others = [h for h in parties.holders if h is not quiet and h.index not in parties.attacks]
    assert all(h.sent == 1 for h in others)


def test_a_network_goes_on_while_one_holder_abstains_every_round():
    parties = _parties(no_dp=True)
    quiet = parties.holders[1]
    quiet.privatize = lambda grad, base: np.zeros_like(grad)
    miners = [Miner(Node(parties.genesis, name=f"n{i}"), 1.0) for i in range(2)]
    net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0))
    for _ in range(3):
        assert net.step().head_changed
    assert net.head.height == 3 and quiet.sent == 0
    senders = {m.identity for m in miners[0].node.block(net.head.hash).messages}
    assert quiet.identities[0] not in senders and len(senders) == len(parties.holders) - 1


def test_make_messages_without_gradients_sends_the_same_messages():
    """keep_gradients=False drops the noised gradients from the reports (K vectors of d
    floats) and changes nothing that is sent; an omniscient attack still reads them."""
    from learningchain.holder import make_messages

    kept = _parties()
    light = _parties()
    base = kept.genesis
    a = make_messages(kept.holders, base)
    b = make_messages(light.holders, base, keep_gradients=False)
    assert [r.message.encoding for r in a] == [r.message.encoding for r in b]
    assert all(r.honest_gradient is not None for r in a) and all(r.honest_gradient is None for r in b)
    p = _parties(byzantine=2, attack="alie")
    seen = []
    attack = next(iter(p.attacks.values()))
    assert attack.omniscient
    original = type(attack).__call__

    def spy(self, ctx):
        seen.append(ctx.honest)
        return original(self, ctx)

    type(attack).__call__ = spy
    try:
        collect_messages(p.holders, p.attacks, p.genesis, set())
    finally:
        type(attack).__call__ = original
    assert seen and all(h is not None and len(h) == 4 and all(v is not None for v in h) for h in seen)
