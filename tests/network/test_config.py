"""Network configs: one file gives every process the same genesis; keys stay private."""

import os
import stat

import pytest

from learningchain.errors import ConfigError
from learningchain.network.config import NetConfigFile, NetworkConfig, load_net_config
from learningchain.network.daemon import load_or_create_key, network_setup, parse_indices
from learningchain.network.launcher import assign_holders


def write(tmp_path, text):
    path = tmp_path / "net.toml"
    path.write_text(text)
    return path


def test_one_file_gives_the_same_genesis_and_another_seed_does_not(tmp_path):
    path = write(tmp_path, '[train]\ndataset = "breast-cancer"\nholders = 5\nseed = 3\n[network]\ninterval_ms = 200\n')
    a = network_setup(load_net_config(path))
    b = network_setup(load_net_config(path))
    assert a.genesis.hash == b.genesis.hash
    assert a.params.retarget == {"interval_ms": 200, "window": 5, "min_bits": 4, "max_bits": 40}
    assert all((x == y).all() for x, y in zip(a.parts, b.parts))
    c = network_setup(load_net_config(path, train_overrides={"seed": 4}))
    assert c.genesis.hash != a.genesis.hash


def test_fixed_difficulty_network_genesis_equals_the_train_genesis():
    from learningchain.config import TrainConfig
    from learningchain.experiments.train import build_parties

    conf = NetConfigFile(TrainConfig(dataset="breast-cancer", holders=4, seed=1), NetworkConfig(interval_ms=0))
    assert network_setup(conf).genesis.hash == build_parties(TrainConfig(dataset="breast-cancer", holders=4,
                                                                         seed=1).resolved()).genesis.hash


def test_written_config_reads_back_to_the_same_chain(tmp_path):
    conf = load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 6, "epsilon": 0.5},
                           network_overrides={"interval_ms": 300, "collect_ms": 100, "genesis_time_ms": 5})
    path = write(tmp_path, conf.to_toml())
    again = load_net_config(path)
    assert again == conf
    assert network_setup(again).genesis.hash == network_setup(conf).genesis.hash


def test_unknown_keys_and_tables_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown \\[network\\] option 'speed'"):
        load_net_config(write(tmp_path, "[network]\nspeed = 3\n"))
    with pytest.raises(ConfigError, match="unknown table"):
        load_net_config(write(tmp_path, "[train]\n[extra]\n"))
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        load_net_config(write(tmp_path, "[train]\nlearning_rate = 1\n"))
    with pytest.raises(ConfigError, match="unseen must be"):
        NetworkConfig(unseen="maybe")


def test_proof_of_authority_needs_well_formed_authorities():
    with pytest.raises(ConfigError, match="needs authorities"):
        network_setup(NetConfigFile(network=NetworkConfig(consensus="poa")))
    with pytest.raises(ConfigError, match="has 3 bytes"):
        NetworkConfig(consensus="poa", authorities=("0xabcdef",))
    auth = "0x" + "ab" * 20
    setup = network_setup(NetConfigFile(network=NetworkConfig(consensus="poa", authorities=(auth,))))
    assert setup.params.consensus == "poa" and setup.params.authorities == (auth,)


def test_node_key_is_created_owner_only_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "node.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path).address == key.address
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        load_or_create_key(path)
    os.chmod(path, 0o600)
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="32-byte hex"):
        load_or_create_key(path)


def test_holder_indices_and_their_assignment_to_nodes():
    assert parse_indices("0,4, 8") == (0, 4, 8)
    assert parse_indices("2-4,1") == (1, 2, 3, 4)
    with pytest.raises(ConfigError, match="not a number"):
        parse_indices("a")
    # a range is bounded before a set of its indices is made (0-100000000000 took all memory)
    for bad in ("0-2000000", "1048576", "4-2"):
        with pytest.raises(ConfigError, match=r"not an index or a range A-B \(A <= B\) in 0\.\.1048575"):
            parse_indices(bad)
    assert parse_indices("1048570-1048575") == tuple(range(1048570, 1048576))
    shares = assign_holders(10, 4)
    assert sorted(k for s in shares for k in s) == list(range(10))
    assert [len(s) for s in shares] == [3, 3, 2, 2]


def test_the_written_file_holds_only_the_train_keys_nodes_honour_and_a_file_with_others_is_refused(tmp_path):
    from learningchain.config import TrainConfig

    cfg = TrainConfig(dataset="breast-cancer", holders=4, miners=3, out=str(tmp_path / "run"), eval_every=2,
                      byzantine_miners=1, verify_last=2, epsilon=0.5)
    text = NetConfigFile(cfg, NetworkConfig(interval_ms=0)).to_toml()
    assert "epsilon = 0.5" in text and "holders = 4" in text
    for ignored in ("miners", "out", "eval_every", "byzantine_miners", "verify_last"):
        assert f"{ignored} =" not in text, ignored
    assert load_net_config(write(tmp_path, text)).train.epsilon == 0.5
    with pytest.raises(ConfigError, match=r"^\[train\] eval_every = 2 is not used by this run: node processes"):
        load_net_config(write(tmp_path, "[train]\neval_every = 2\n"))


def test_consensus_keys_are_the_chain_section_of_the_network_table():
    from dataclasses import fields

    from learningchain.network.config import CONSENSUS_KEYS

    chain = {f.name for f in fields(NetworkConfig) if f.metadata["section"] == "chain"}
    assert set(CONSENSUS_KEYS) == chain == {"consensus", "authorities", "members", "interval_ms", "window",
                                            "min_bits", "max_bits", "genesis_time_ms", "budget"}
