"""[network] budget: each enrolled holder's total epsilon, fixed by genesis; node
processes' holders stop at it and the chain proves that none went past it."""

import asyncio
import json
from fractions import Fraction

import pytest

from learningchain.cli.main import main
from learningchain.errors import ConfigError
from learningchain.network.config import load_net_config
from learningchain.network.daemon import load_or_create_key, network_setup

from .netkit import start, wait_until


def _conf(members=(), rounds=8, **network):
    net = {"interval_ms": 0, "collect_ms": 300, "reconnect_s": 0.2, "handshake_timeout_s": 3.0,
           "members": list(members)}
    net.update(network)
    return load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 4, "rounds": rounds,
                                                  "seed": 0, "epsilon": 0.1, "difficulty": 8},
                           network_overrides=net)


def _members(directory, n=4):
    return tuple("0x" + load_or_create_key(directory / f"holder-{k}.key").address.hex() for k in range(n))


def test_the_budget_goes_into_genesis_and_needs_enrolled_holders(tmp_path, capsys):
    members = _members(tmp_path / "a")
    with_budget = network_setup(_conf(members, budget=0.3))
    assert with_budget.params.budget == 0.3 and with_budget.params.members == members
    without = network_setup(_conf(members))
    assert without.params.budget is None and with_budget.genesis.hash != without.genesis.hash
    path = tmp_path / "net.toml"  # the written config reads back to the same chain
    path.write_text(_conf(members, budget=0.3).to_toml())
    assert "budget = 0.3" in path.read_text()
    assert network_setup(load_net_config(path)).genesis.hash == with_budget.genesis.hash
    with pytest.raises(ConfigError, match="budget needs enrolled holders"):
        network_setup(_conf(budget=0.3))
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ConfigError, match="budget must be a finite number > 0"):
            _conf(members, budget=bad)
    out = tmp_path / "out"
    assert main(["network", "up", "--nodes", "2", "--dataset", "synthetic", "--holders", "4", "--rounds", "2",
                 "--set", "network.budget=0.3", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == ("learningchain: error: [network] budget needs enrolled holders: pass --permissioned or list "
                   "them in [network] members\n")
    assert not out.exists()


def test_node_process_holders_stop_at_their_budget_and_remember_it_across_a_restart(tmp_path, caplog):
    members = _members(tmp_path / "a")
    conf = _conf(members, rounds=8, budget=0.3)  # three messages of 0.1 each, then no more

    async def run(stop_after):
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= stop_after, 60, f"height {stop_after}")
            await asyncio.sleep(1.5)  # the holders are asked again on the head: they send nothing
            return a.node.height, [(h.sent, h.spent) for h in a.holders], [h.stopped for h in a.holders], \
                a.node.spend_at(a.node.head_hash)
        finally:
            await a.stop()

    height, sent, stopped, spend = asyncio.run(run(3))
    assert height == 3
    assert sent == [(3, Fraction(3, 10))] * 4
    assert all(s and "over its budget of 0.3" in s for s in stopped)
    assert {"0x" + a.hex(): v for a, v in spend.items()} == {m: (3, Fraction(3, 10)) for m in members}
    saved = json.loads((tmp_path / "a" / "spent.json").read_text())
    assert saved == {str(k): [3, "3/10"] for k in range(4)}
    # restarted (and asked again on the same head), the holders know what they released and send nothing
    (tmp_path / "a" / "held").unlink()
    height, sent, stopped, _ = asyncio.run(run(3))
    assert height == 3 and sent == [(3, Fraction(3, 10))] * 4 and all(stopped)
    assert main(["chain", "privacy", str(tmp_path / "a"), "--json"]) == 0
