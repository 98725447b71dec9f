"""The hostile network, against real `learningchain node` processes on loopback.

Three honest nodes of a permissioned network run first alone (the baseline
block rate), then under every attack of the hostile-network issue at once, from
attackers in this process that speak the real protocol (TLS, HELLO, AUTH):

1. forged bodies: each block the attacker hears of is sent on to the other
   nodes as copies with another model, a dropped message and a cut body;
2. sync stalls: peers whose hello claims far more work, one silent, one
   answering every request with "more" and no block;
3. a spoofer claiming an honest node's id;
4. a Sybil flood: 24 validly signed messages of norm about 1e6 from fresh keys
   every round;
5. junk blocks with bad proof of work and large bodies;
6. one host (127.0.0.2) holding half-open and authenticated connections;
7. 300 slow-loris connections to the status API.

(8, a node directory whose chain file is not a chain store, is refused at start:
tests/network/test_daemon.py.) Every honest node must stay on one head with its
honest peers, at a block rate within 30% of the baseline, its RSS growing by
less than 100 MB, and no Sybil message may reach a block.
"""

from __future__ import annotations

import pytest

from learningchain.node.store import SQLiteStore

from .adversary import attack_scenario

pytestmark = pytest.mark.slow

WINDOW_S = 20.0


def test_every_attack_at_once_leaves_the_honest_network_on_its_head_at_its_rate(tmp_path):
    r = attack_scenario(tmp_path, WINDOW_S)
    attackers, baseline, attacked, rss0, rss1 = r["attackers"], r["baseline"], r["attacked"], r["rss0"], r["rss1"]
    net, ids, members, during, final, codes = r["net"], r["ids"], r["members"], r["during"], r["final"], r["codes"]
    assert attackers.errors == [], attackers.errors
    print("attacks sent", attackers.sent)
    assert attackers.sent["forged"] > 10 and attackers.sent["sybil"] > 100 and attackers.sent["junk_bytes"] > 4 << 20
    print("block rate per node, baseline", baseline, "under attack", attacked, "RSS MB", rss0, rss1)
    for b, a in zip(baseline, attacked):
        assert a >= 0.7 * b, (baseline, attacked)
    for st, own in zip(during, ids):
        honest = {"0x" + i.hex() for i in ids} - {"0x" + own.hex()}
        assert honest <= {p["id"] for p in st["peers"]}, st["peers"]  # kept its honest peers
    assert all(r1 - r0 < 100 for r0, r1 in zip(rss0, rss1)), (rss0, rss1)
    assert all(c == 0 for c in codes.values()), codes
    assert len({x["head"] for x in final}) == 1
    for n in net.nodes:  # no message from a key outside genesis' members in any stored block
        store = SQLiteStore(n.dir / "chain.sqlite", create=False)
        try:
            for h in range(1, store.canonical_length()):
                block = store.get(store.canonical_hash(h))
                assert {"0x" + m.identity.hex() for m in block.messages} <= members
        finally:
            store.close()
