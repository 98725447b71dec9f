"""Rewards are a pure function of the chain; the economy is closed."""

import json

import pytest

from learningchain.cli.balances import chain_balances
from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments.train import run_training
from learningchain.protocol.rewards import balances_of, block_payments, check_rewards

from ..helpers import small_params


class FakeBlock:
    def __init__(self, height, miner, identities):
        from types import SimpleNamespace

        self.height = height
        self.header = SimpleNamespace(miner=miner)
        self.messages = [SimpleNamespace(identity=i) for i in identities]


def test_split_mode_shares_the_reward_to_the_unit():
    b = FakeBlock(1, b"M" * 20, [b"a" * 20, b"b" * 20, b"c" * 20])
    d = block_payments(b, {"mode": "split", "block_reward": 10})
    assert d[b"M" * 20] == 10 and [d[b"a" * 20], d[b"b" * 20], d[b"c" * 20]] == [-4, -3, -3]
    assert sum(d.values()) == 0


def test_fee_mode_charges_each_message():
    b = FakeBlock(1, b"M" * 20, [b"a" * 20, b"b" * 20])
    d = block_payments(b, {"mode": "fee", "fee_per_message": 7})
    assert d == {b"a" * 20: -7, b"b" * 20: -7, b"M" * 20: 14}


def test_slow_reference_agrees_over_many_blocks():
    import random

    rng = random.Random(0)
    blocks = [FakeBlock(0, b"\x00" * 20, [])]
    for h in range(1, 60):
        blocks.append(FakeBlock(h, bytes([rng.randrange(4)]) * 20,
                                [bytes([10 + rng.randrange(30)]) * 20 for _ in range(rng.randrange(1, 9))]))
    rule = {"mode": "split", "block_reward": 1001}
    got = balances_of(blocks, rule)
    want = {}
    for b in blocks[1:]:
        n = len(b.messages)
        for i, m in enumerate(b.messages):
            want[m.identity] = want.get(m.identity, 0) - (1001 // n + (1 if i < 1001 % n else 0))
        want[b.header.miner] = want.get(b.header.miner, 0) + 1001
    assert dict(got.balances) == {k: v for k, v in want.items()}
    assert got.paid_to_miners == got.paid_by_holders == 1001 * 59


@pytest.mark.parametrize("bad", [{"mode": "gift"}, {"mode": "fee"}, {"mode": "fee", "fee_per_message": -1},
                                 {"mode": "split", "block_reward": 1.5}, {"mode": "split", "block_reward": 1, "x": 2}])
def test_bad_reward_rules_are_refused(bad):
    with pytest.raises(ConfigError):
        check_rewards(bad)
    with pytest.raises(ConfigError):
        small_params(rewards=bad)


def test_after_a_run_miners_get_reward_times_blocks_and_byzantine_rejected_blocks_earn_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    s = run_training(TrainConfig(dataset="breast-cancer", rounds=30, epsilon=0.5, byzantine_miners=2,
                                 byzantine_power=0.4, miner_attack="wrong-model", out=str(out), progress=False,
                                 rewards={"mode": "split", "block_reward": 1000}))
    params, b = chain_balances(out)
    assert b.blocks == s["height"] and s["rejected_blocks"] > 0
    for miner, blocks in b.mined.items():
        assert b.balances[miner] == 1000 * blocks
    assert b.paid_to_miners == b.paid_by_holders == 1000 * s["height"]
    assert sum(b.balances.values()) == 0
    assert s["rewards"]["paid_to_miners"] == 1000 * s["height"]
    # the Byzantine miners' blocks were all refused, so they are not on the chain and earn nothing
    from learningchain.node import SQLiteStore

    store = SQLiteStore(out / "chain.sqlite", create=False)
    miners_on_chain = {bytes(blk.header.miner) for blk in store.canonical_blocks(1)}
    store.close()
    assert miners_on_chain == set(b.mined)
    assert s["byzantine_blocks_on_honest_chain"] == 0
    assert main(["chain", "balances", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["paid_to_miners"] == data["paid_by_holders"]
