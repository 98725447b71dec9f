"""The computing nodes of a run and the narrow view their strategies write blocks with."""

import numpy as np
import pytest

from learningchain.attacks.miners import Cartel, Withhold, make_miner_strategy
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError, InvalidBlock
from learningchain.network.simulation import InProcessNetwork
from learningchain.node import Node
from learningchain.parties import (HonestMiner, Miner, MinerStrategy, MinerView, build_chain_setup, build_miners,
                                   build_parties, check_miners)

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params

VIEW = {"head", "own_head", "params", "miner", "messages", "difficulty", "work", "build", "template", "seal",
        "follow", "colluding"}


@pytest.fixture
def chain():
    params = small_params(holders=4)
    genesis = genesis_for(params)
    msgs = [message_for(k, params, genesis, v)
            for k, v in zip(make_keys(4), honest_vectors(params, 4, np.random.default_rng(0)))]
    honest = Node(genesis, name="honest")
    mine = Node(genesis, name="mine", miner=b"\xaa" * 20)
    for node in (honest, mine):
        for m in msgs:
            node.on_message(m)
    return genesis, msgs, honest, mine


def test_a_view_shows_the_head_the_mempool_the_rules_and_a_seal_and_nothing_else(chain):
    genesis, msgs, honest, mine = chain
    view = MinerView(mine, honest=honest, seal=mine.seal, colluding=set())
    assert {name for name in dir(view) if not name.startswith("_")} == VIEW
    assert view.head.hash == view.own_head.hash == genesis.hash
    assert sorted(m.hash for m in view.messages(genesis.hash)) == sorted(m.hash for m in msgs)
    assert view.difficulty(genesis.header) == mine.next_difficulty(genesis.header)
    assert view.work(genesis.hash) == honest.work[genesis.hash] and view.work(b"\x00" * 32) is None


def test_the_views_block_is_the_nodes_template_built_by_the_protocols_build_block(chain):
    genesis, msgs, honest, mine = chain
    view = MinerView(mine, honest=honest, seal=mine.seal, colluding=set())
    assert view.template(timestamp=2000).hash == mine.template(timestamp=2000).hash
    assert view.build(genesis, list(reversed(msgs)), timestamp=2000).hash == mine.template(timestamp=2000).hash
    (sealed,) = HonestMiner().propose(view, 2000)
    assert honest.on_block(sealed).new_head


def test_a_view_without_messages_refuses_to_build_like_the_node(chain):
    genesis, msgs, honest, _ = chain
    empty = Node(genesis)
    view = MinerView(empty, honest=honest, seal=empty.seal, colluding=set())
    with pytest.raises(InvalidBlock, match="too-few-messages"):
        view.template(timestamp=2000)


def test_every_strategy_follows_the_interface():
    assert isinstance(HonestMiner(), MinerStrategy)
    for name in ("wrong-model", "drop-honest", "forged-messages", "skip-validation", "withhold"):
        assert isinstance(make_miner_strategy(name), MinerStrategy)


def test_the_simulation_gives_each_strategy_a_view_not_the_network():
    cfg = TrainConfig(dataset="synthetic", holders=4, rounds=2, epsilon=1.0, miners=3, progress=False)
    parties = build_parties(cfg)
    seen = []

    class Spy(HonestMiner):
        def propose(self, view, timestamp):
            seen.append(view)
            return super().propose(view, timestamp)

    miners, _ = build_miners(cfg, parties.genesis, None)
    miners = [Miner(m.node, m.power, Spy()) for m in miners]
    net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(1))
    assert net.step().head_changed
    assert seen and all(isinstance(v, MinerView) for v in seen)
    assert not any(isinstance(getattr(v, name), InProcessNetwork) for v in seen for name in VIEW)


def test_one_cartel_member_decides_when_the_withheld_fork_is_released(chain):
    genesis, msgs, honest, mine = chain
    cartel = Cartel(np.random.default_rng(0))
    first, second = Withhold(cartel), Withhold(cartel)
    view = MinerView(mine, honest=honest, seal=mine.seal, colluding=set())
    assert first.propose(view, 2000) == []  # withheld
    assert second.on_round_end(view, 2000) == [] and cartel.leader is second
    private = mine.head_hash
    public = honest.seal(honest.template(timestamp=2100))
    assert honest.on_block(public).new_head  # the public chain catches up: the fork is released
    assert first.on_round_end(view, 2000) == []  # not the one that decides
    released = second.on_round_end(view, 2000)
    assert [b.hash for b in released] == [private] and cartel.private == [] and cartel.released == 1


def test_build_miners_puts_the_byzantine_miners_last_as_light_clients_with_their_share_of_power(tmp_path):
    cfg = TrainConfig(dataset="synthetic", holders=4, miners=4, byzantine_miners=1, byzantine_power=0.4,
                      miner_attack="wrong-model", progress=False).resolved()
    genesis = build_chain_setup(cfg).genesis
    miners, n_byz = build_miners(cfg, genesis, tmp_path / "chain.sqlite")
    assert n_byz == 1 and [m.byzantine for m in miners] == [False, False, False, True]
    assert miners[-1].node.validation == "header" and miners[0].node.validation == "full"
    assert sum(m.power for m in miners) == pytest.approx(1.0) and miners[-1].power == pytest.approx(0.4)
    miners[0].node.store.close()


def test_check_miners_refuses_a_run_without_an_honest_miner_or_with_an_unknown_attack():
    with pytest.raises(ConfigError, match="at least one honest miner"):
        check_miners(TrainConfig(miners=2, byzantine_miners=2))
    with pytest.raises(ConfigError, match="known:"):
        check_miners(TrainConfig(miners=3, byzantine_miners=1, miner_attack="eclipse"))
