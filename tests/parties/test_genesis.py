"""The chain every party derives from the config alone."""

import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments import train
from learningchain.parties import GENESIS_TIME_MS, apply_target_epsilon, build_chain_setup, build_parties

CFG = dict(dataset="synthetic", holders=5, rounds=4, epsilon=0.5, progress=False)


def test_one_config_gives_one_genesis_in_every_process():
    a, b = build_chain_setup(TrainConfig(**CFG)), build_chain_setup(TrainConfig(**CFG))
    assert a.genesis.hash == b.genesis.hash
    assert a.genesis.header.timestamp == GENESIS_TIME_MS
    assert [p.tolist() for p in a.parts] == [p.tolist() for p in b.parts]
    assert build_chain_setup(TrainConfig(**dict(CFG, seed=1))).genesis.hash != a.genesis.hash


def test_the_params_hook_and_the_genesis_time_change_the_genesis():
    base = build_chain_setup(TrainConfig(**CFG))
    hooked = build_chain_setup(TrainConfig(**CFG), params_hook=lambda p: p.replace(difficulty=3))
    assert hooked.params.difficulty == 3 and hooked.genesis.hash != base.genesis.hash
    later = build_chain_setup(TrainConfig(**CFG), genesis_time_ms=GENESIS_TIME_MS + 1)
    assert later.genesis.hash != base.genesis.hash


def test_parties_hold_one_holder_per_shard_and_the_byzantine_ones_attacks():
    parties = build_parties(TrainConfig(**dict(CFG, byzantine=2, attack="sign-flip")))
    assert [h.index for h in parties.holders] == list(range(5))
    assert sorted(parties.attacks) == parties.byzantine_holders and len(parties.byzantine_holders) == 2
    assert parties.genesis.hash == build_chain_setup(TrainConfig(**CFG)).genesis.hash


def test_more_holders_than_examples_is_refused():
    with pytest.raises(ConfigError, match="holders for"):
        build_chain_setup(TrainConfig(**dict(CFG, holders=10**6)))


def test_a_target_epsilon_sets_the_per_round_budget():
    pytest.importorskip("dp_accounting")  # the tight accountant (the ``privacy`` extra)
    cfg = apply_target_epsilon(TrainConfig(**dict(CFG, target_epsilon=1.0)).resolved())
    assert 0 < cfg.epsilon < 1.0
    assert apply_target_epsilon(TrainConfig(**CFG).resolved()).epsilon == 0.5


def test_the_names_other_code_imports_from_train_are_the_parties_ones():
    # the TCP daemon and the launcher import these from experiments.train until they move
    assert train.build_chain_setup is build_chain_setup and train.GENESIS_TIME_MS == GENESIS_TIME_MS
    assert train.build_parties is build_parties
