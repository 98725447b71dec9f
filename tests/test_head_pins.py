"""Pinned head hashes of seeded native runs and of network genesis blocks.

A refactoring must leave every hash here as it is. A deliberate protocol change
updates the pin in its own commit and says why (docs/ARCHITECTURE.md, section 2).
The runs cover each stage of the data flow: holders (DP mechanisms, schedules,
fresh identities, Byzantine attacks), the rules, proof of work, and Byzantine
miners; the genesis pins cover a network's consensus keys.

A seeded run's head depends on the holders' gradients, float computations whose
last bits depend on the machine's CPU kernels and library builds (torch, numpy,
scikit-learn); consensus never recomputes them (validation replays the messages
in exact integer arithmetic), so two machines may give two heads for the same
seed and code. Each run therefore lists the heads seen on the float
environments the project is tested on: the first on the machines the pins were
made on, the second on an AMD EPYC (AVX-512) with numpy 2.4.6, scikit-learn
1.9.1 and torch 2.13.0+cpu, where the code of the first pins gives it. A change
that moves a head gives neither. The genesis pins involve no floats and are
single. Consensus itself is checked across machines by
tests/protocol/test_recorded_chains.py: the chains of these runs, recorded
where the first heads were made (tests/vectors/chains), must replay to those
heads on every machine.
"""

import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.train import run_training
from learningchain.network.config import load_net_config
from learningchain.network.daemon import network_setup

RUNS = {
    "synthetic-dp-byzantine": (
        dict(dataset="synthetic", rounds=8, epsilon=0.3, byzantine=5),
        ("0x3cb0d9a86b2c5130b0aa9fb1e15cbea6a264d829d06e4e696a5f996765f467a0",
         "0x1d5f54201371129e237345fc7d1b48fa9b0c52711ff9e40f5f7e118085c106d0")),
    "synthetic-fresh-ids-sign-flip": (
        dict(dataset="synthetic", rounds=6, epsilon=1.0, byzantine=3, attack="sign-flip", fresh_identities=True),
        ("0x370f5b03394ef070cffbdea2ad52d5e2bf9e75a79daf291d624561de6f9e4cd5",
         "0x35f870e1f5c8915a966002f09f422a542360a273eba49982070dab4907a1e189")),
    "breast-cancer-no-dp-krum": (
        dict(dataset="breast-cancer", rounds=6, no_dp=True, aggregator="krum", byzantine=1),
        ("0xedfd82e82eec3f46dd97ce522921b5ed2d3ad95a49a630ec89b16e55a4fc01a7",
         "0x43596b6265be1599ff23b9e0b2d44e520fd0674ab9b10b886a9b046e07da56ab")),
    "breast-cancer-gaussian-median": (
        dict(dataset="breast-cancer", rounds=5, mechanism="gaussian", aggregator="median"),
        ("0x52d305e121b5b2a3a06c99b395734af4a12b0de73cf45b10002c1ba232fb3f93",
         "0x1647bb2eb6257cbae0851385a2826d3e41b1409dfffa53c37a3e4b12ebbf7484")),
    "synthetic-byzantine-miner": (
        dict(dataset="synthetic", rounds=6, epsilon=0.5, holders=8, byzantine_miners=1, byzantine_power=0.3,
             miner_attack="wrong-model"),
        ("0xdb8901292aab307be58ca0b6dc8298ef8f4fb591191115c0f466fd018fec7500",
         "0xb2bfa1ba01349ccf26b9e186b1846d688c1790335cfd93ebae17802057b1a9e9")),
    "synthetic-six-holders": (
        dict(dataset="synthetic", rounds=5, epsilon=0.5, holders=6),
        ("0xab03087da63771f2fe5971a7980af654f0c28c04fb261cf14a73391d4d1a1f3d",
         "0xa8c0f58b6f0e1b8a897f4bb4bf1bce2f5ae6a784a87716377643262116f872d8")),
    "synthetic-ex-decay-centered": (
        dict(dataset="synthetic", rounds=5, epsilon=2.0, schedule="decay", aggregator="centered-clipping",
             byzantine=2),
        ("0xcd23fd2066d9ed1ce527004a083e94c405d5ac0b0c9397e8d50eb18f9ae2382b",
         "0x9c82c0c4c320a9d1c7baf4e41176e713e78f3f2011ad23c447e62ce2ab287f53")),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_seeded_native_run_keeps_its_head_hash(tmp_path, name):
    options, heads = RUNS[name]
    summary = run_training(TrainConfig(out=str(tmp_path / "run"), force=True, progress=False, **options))
    assert summary["head_hash"] in heads


MEMBERS = tuple("0x" + bytes([b]).hex() * 20 for b in (0x11, 0x22, 0x33, 0x44))


@pytest.mark.parametrize("network, genesis", [
    ({}, "0xae6433680028e3cca691d3da4489278f82e467efb8db3f7b4390d800a6cc9ff0"),
    ({"members": MEMBERS, "budget": 0.9}, "0xe282e8274dedbaae59e6ea5880cdb7aacffd7f80dfa9bbca83812020945921c0"),
])
def test_a_network_config_keeps_its_genesis_hash(network, genesis):
    conf = load_net_config(None, train_overrides={"holders": 4, "rounds": 5}, network_overrides=network)
    assert "0x" + network_setup(conf).genesis.hash.hex() == genesis
