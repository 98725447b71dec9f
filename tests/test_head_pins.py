"""Pinned head hashes of seeded native runs and of network genesis blocks.

A refactoring must leave every hash here as it is. A deliberate protocol change
updates the pin in its own commit and says why (docs/ARCHITECTURE.md, section 2).
The runs cover each stage of the data flow: holders (DP mechanisms, schedules,
fresh identities, Byzantine attacks), the rules, proof of work, and Byzantine
miners; the genesis pins cover a network's consensus keys.
"""

import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.train import run_training
from learningchain.network.config import load_net_config
from learningchain.network.daemon import network_setup

RUNS = {
    "synthetic-dp-byzantine": (
        dict(dataset="synthetic", rounds=8, epsilon=0.3, byzantine=5),
        "0x3cb0d9a86b2c5130b0aa9fb1e15cbea6a264d829d06e4e696a5f996765f467a0"),
    "synthetic-fresh-ids-sign-flip": (
        dict(dataset="synthetic", rounds=6, epsilon=1.0, byzantine=3, attack="sign-flip", fresh_identities=True),
        "0x370f5b03394ef070cffbdea2ad52d5e2bf9e75a79daf291d624561de6f9e4cd5"),
    "breast-cancer-no-dp-krum": (
        dict(dataset="breast-cancer", rounds=6, no_dp=True, aggregator="krum", byzantine=1),
        "0xedfd82e82eec3f46dd97ce522921b5ed2d3ad95a49a630ec89b16e55a4fc01a7"),
    "breast-cancer-gaussian-median": (
        dict(dataset="breast-cancer", rounds=5, mechanism="gaussian", aggregator="median"),
        "0x52d305e121b5b2a3a06c99b395734af4a12b0de73cf45b10002c1ba232fb3f93"),
    "synthetic-byzantine-miner": (
        dict(dataset="synthetic", rounds=6, epsilon=0.5, holders=8, byzantine_miners=1, byzantine_power=0.3,
             miner_attack="wrong-model"),
        "0xdb8901292aab307be58ca0b6dc8298ef8f4fb591191115c0f466fd018fec7500"),
    "synthetic-six-holders": (
        dict(dataset="synthetic", rounds=5, epsilon=0.5, holders=6),
        "0xab03087da63771f2fe5971a7980af654f0c28c04fb261cf14a73391d4d1a1f3d"),
    "synthetic-ex-decay-centered": (
        dict(dataset="synthetic", rounds=5, epsilon=2.0, schedule="decay", aggregator="centered-clipping",
             byzantine=2),
        "0xcd23fd2066d9ed1ce527004a083e94c405d5ac0b0c9397e8d50eb18f9ae2382b"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_seeded_native_run_keeps_its_head_hash(tmp_path, name):
    options, head = RUNS[name]
    summary = run_training(TrainConfig(out=str(tmp_path / "run"), force=True, progress=False, **options))
    assert summary["head_hash"] == head


MEMBERS = tuple("0x" + bytes([b]).hex() * 20 for b in (0x11, 0x22, 0x33, 0x44))


@pytest.mark.parametrize("network, genesis", [
    ({}, "0xae6433680028e3cca691d3da4489278f82e467efb8db3f7b4390d800a6cc9ff0"),
    ({"members": MEMBERS, "budget": 0.9}, "0xe282e8274dedbaae59e6ea5880cdb7aacffd7f80dfa9bbca83812020945921c0"),
])
def test_a_network_config_keeps_its_genesis_hash(network, genesis):
    conf = load_net_config(None, train_overrides={"holders": 4, "rounds": 5}, network_overrides=network)
    assert "0x" + network_setup(conf).genesis.hash.hex() == genesis
