"""Separate `learningchain node` processes on loopback (slow: each process imports
torch and builds its data set; together about a minute on two cores)."""

import json
import signal

import pytest

from learningchain.cli.main import main
from learningchain.network.config import load_net_config
from learningchain.network.launcher import LocalNetwork, converged
from learningchain.node.verify import verify_chain

from .netkit import all_stored, canonical

pytestmark = pytest.mark.slow


def test_a_node_killed_with_sigkill_restarts_on_its_directory_and_catches_up(tmp_path):
    rounds = 40  # room for the others to move on after the kill, however far the chain got before it
    conf = load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 6, "rounds": rounds,
                                                  "no_dp": True, "difficulty": 10},
                           network_overrides={"interval_ms": 0, "collect_ms": 250, "reconnect_s": 0.25,
                                              "holder_delay_ms": 150})  # at least 6 s for the 40 rounds
    net = LocalNetwork(tmp_path, conf, 3)
    net.prepare()
    victim = net.nodes[2]
    try:
        net.start()
        net.wait_for(lambda s: all(x and x["height"] >= 6 for x in s), 120, what="height 6 everywhere")
        net.kill(2, signal.SIGKILL)
        assert net.nodes[2].proc.returncode == -signal.SIGKILL
        stored = all_stored(victim.dir / "chain.sqlite")  # what the killed node had written
        report = verify_chain(victim.dir)  # the chain it left behind is valid as it stands
        assert report.ok, report.error
        height_at_kill = report.height
        moved_on = min(height_at_kill + 4, rounds)
        net.wait_for(lambda s: s[0] and s[0]["height"] >= moved_on, 120, what="the others to move on")
        net.restart(2)
        final = net.wait_for(lambda s: converged(s, rounds), 180, what=f"everyone at round {rounds}")
        assert final[2]["last_sync"]["to_height"] > height_at_kill
    finally:
        codes = net.stop()
    assert all(c == 0 for c in codes.values()), codes
    assert stored <= all_stored(victim.dir / "chain.sqlite")  # no block lost
    chains = [canonical(n.dir / "chain.sqlite") for n in net.nodes]
    assert chains[0] == chains[1] == chains[2] and len(chains[0]) == rounds + 1
    for n in net.nodes:
        assert verify_chain(n.dir).ok
        assert json.loads((n.dir / "status.json").read_text())["height"] == rounds


def test_network_up_four_nodes_twenty_rounds(tmp_path, capsys):
    """The issue's done-when run: same head, every chain verifies, test error near the in-process run."""
    out = tmp_path / "net"
    code = main(["network", "up", "--nodes", "4", "--rounds", "20", "--dataset", "synthetic", "--out", str(out),
                 "--compare", "--json", "--quiet", "--timeout", "300"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["same_head"] and summary["all_verified"]
    assert all(n["height"] == 20 and n["exit_code"] == 0 for n in summary["node_details"])
    assert all(n["verify"] == "OK" and n["verified_blocks"] == 20 for n in summary["node_details"])
    # each node hosted its share of the 30 holders and mined on its own
    assert sorted(k for n in summary["node_details"] for k in n["holders"]) == list(range(30))
    # the holders draw their DP noise independently in each run (spread about 0.015 at 20 rounds)
    assert abs(summary["test_error"] - summary["inprocess_test_error"]) <= 0.03
    assert summary["test_error"] <= summary["baseline_test_error"] + 0.05
    for n in summary["node_details"]:
        assert main(["chain", "head", n["dir"]]) == 0
    heads = capsys.readouterr().out.split()
    assert len(set(heads[1::2])) == 1 and heads[0] == "20"
