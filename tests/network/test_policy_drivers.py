"""One node policy, two drivers: the in-process simulation and a TCP daemon decide alike.

A block that loses the fork choice, an orphan and a block whose messages the node
never saw (under ``unseen = "wait"``) are fed to an in-process node through the
simulation's broadcast path, and the same bytes to a :class:`NodeDaemon` through a
peer connection; both must take the same decisions in the same order.
"""

import asyncio
from collections import Counter

import numpy as np

from learningchain.network.simulation import InProcessNetwork, Miner
from learningchain.network.wire import Kind, encode_messages
from learningchain.node import Node
from learningchain.node.actions import decisions

from .netkit import RawPeer, forged_round, small_conf, start, wait_until


def _scenario(daemon):
    """(what, payload) steps: messages or a block, as a peer would gossip them."""
    genesis = daemon.genesis
    seeds = iter(range(30, 200))
    x_msgs, x = forged_round(daemon, seed=next(seeds), parent=genesis)
    while True:  # a sibling with the same work and a higher hash: it loses the fork choice
        _, y = forged_round(daemon, seed=next(seeds), parent=genesis)
        if y.hash > x.hash:
            break
    p_msgs, p = forged_round(daemon, seed=next(seeds), parent=x)
    z_msgs, z = forged_round(daemon, seed=next(seeds), parent=p)
    return [("messages", x_msgs), ("block", x),  # accepted: the new head
            ("block", y),  # loses the fork choice: deferred
            ("block", z),  # its parent is unknown: an orphan, ask for the parent
            ("messages", z_msgs),  # for a block not known yet: held
            ("block", p),  # its messages were never seen here: parked
            # they come: admitted, and the parked block accepted; the orphan it connects
            # waits for its held messages, which its parent releases, and is accepted
            ("messages", p_msgs)]


def _in_process(genesis, rules, steps) -> list:
    node = Node(genesis, rules=rules, check_unseen=False)
    net = InProcessNetwork(genesis, [], [Miner(node, 1.0)], rng=np.random.default_rng(0))
    out = []
    for what, item in steps:
        if what == "messages":
            for m in item:
                out += net.broadcast_message(m)[0]
        else:
            out += net.broadcast_block(item, Counter())[0]
    return out, node


def test_the_simulation_and_the_daemon_take_the_same_decisions(tmp_path):
    conf = small_conf(rounds=4, stop_height=0, unseen="wait", unseen_grace_ms=20_000, sync_timeout_s=60.0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        recorded: list = []
        apply = a.apply

        def record(actions):
            recorded.extend(actions)
            apply(actions)

        a.apply = record
        try:
            steps = _scenario(a)
            expected, sim_node = _in_process(a.genesis, a.policy.rules, steps)
            peer = await RawPeer.connect(a, node_id=b"\x0c" * 20)
            await asyncio.sleep(0.2)
            for what, item in steps:
                if what == "messages":
                    peer.send(Kind.MESSAGES, encode_messages([m.encode() for m in item]))
                else:
                    peer.send(Kind.BLOCK, item.encode())
            await wait_until(lambda: len(recorded) >= len(expected), 10, "the daemon's decisions")
            await asyncio.sleep(0.2)
            peer.close()
            return expected, recorded, sim_node, a.node.head_hash, steps
        finally:
            await a.stop()

    expected, recorded, sim_node, daemon_head, steps = asyncio.run(main())
    assert decisions(recorded) == decisions(expected)
    names = [name for name, _ in decisions(expected)]
    assert names == ["Admitted"] * 4 + ["Accepted", "NewHead", "Deferred", "Orphan"] + ["Held"] * 4 + \
        ["Parked"] + ["Admitted"] * 4 + ["Parked", "Accepted"] + ["Admitted"] * 4 + ["Accepted", "NewHead"]
    z = steps[3][1]
    assert daemon_head == sim_node.head_hash == z.hash
    assert steps[2][1].hash in sim_node.policy.deferred
