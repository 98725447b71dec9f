"""Proof of authority and adaptive proof of work in the node loop, and the status API."""

import asyncio
import json
import time
import urllib.request

from learningchain.cli.main import main
from learningchain.network.daemon import load_or_create_key
from learningchain.node.verify import verify_chain

from .netkit import same_head, small_conf, start, wait_until


def test_authorities_take_turns_and_cover_for_one_that_is_down(tmp_path):
    names = ["s0", "s1", "s2"]
    auths = ["0x" + load_or_create_key(tmp_path / n / "node.key").address.hex() for n in names]
    conf = small_conf(rounds=12, consensus="poa", authorities=auths, poa_backoff_ms=150, collect_ms=200,
                      stop_height=6)

    async def main_():
        s0 = await start(conf, tmp_path, "s0", holder_indices="0,1")
        s1 = await start(conf, tmp_path, "s1", holder_indices="2", peers=[s0.transport.advertise])
        s2 = await start(conf, tmp_path, "s2", holder_indices="3", peers=[s0.transport.advertise])
        watcher = await start(conf, tmp_path, "watcher", role="miner", peers=[s1.transport.advertise])
        nodes = [s0, s1, s2, watcher]
        try:
            assert not watcher.mines  # not an authority: it validates and relays only
            await wait_until(lambda: same_head(nodes, 6), 60, "six blocks")
            await s2.stop()  # s2's turns (heights 2 mod 3) now fall to the others, out of turn
            live = [s0, s1, watcher]
            for d in live:
                d.stop_height = 12
            await wait_until(lambda: same_head(live, 12), 60, "the last round without s2")
            return [live[0].node.block_at(h).header for h in range(1, 13)]
        finally:
            for d in (s0, s1, watcher):
                await d.stop()

    headers = asyncio.run(main_())
    in_turn = {h.height: h.miner == bytes.fromhex(auths[h.height % 3][2:]) for h in headers}
    # weight 2 exactly when the in-turn authority sealed (clique's rule), 1 otherwise
    assert all(h.difficulty == (2 if in_turn[h.height] else 1) for h in headers)
    assert sum(in_turn[h] for h in range(1, 7)) >= 4  # all up: the in-turn signer is first (races aside)
    s2 = bytes.fromhex(auths[2][2:])
    assert not any(h.miner == s2 for h in headers[6:])  # s2 down from height 7 on
    assert not in_turn[8] and not in_turn[11]  # its turns were sealed out of turn by the others
    assert in_turn[10] or in_turn[12]
    assert verify_chain(tmp_path / "watcher").ok


def test_proof_of_work_difficulty_follows_the_block_interval(tmp_path):
    # blocks come every ~0.3 s, far below the 4 s target: the rule adds a bit every 2 blocks
    conf = small_conf(rounds=9, interval_ms=4000, window=2, min_bits=4, max_bits=12, collect_ms=300,
                      genesis_time_ms=int(time.time() * 1000))

    async def main_():
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        b = await start(conf, tmp_path, "b", holder_indices="2,3", peers=[a.transport.advertise])
        try:
            await wait_until(lambda: same_head([a, b], 9), 60, "nine blocks")
            return [a.node.block_at(h).header.difficulty for h in range(1, 10)]
        finally:
            await a.stop()
            await b.stop()

    bits = asyncio.run(main_())
    # independent reference: start at 8, one bit up after each full window of 2 blocks, at most 12
    want = [min(12, 8 + (h - 1) // 2) for h in range(1, 10)]
    assert bits == want
    assert verify_chain(tmp_path / "b").ok


def test_status_api_answers_over_http(tmp_path):
    conf = small_conf(rounds=3)

    async def main_():
        a = await start(conf, tmp_path, "a", holder_indices="0-3", http=("127.0.0.1", 0))
        try:
            await wait_until(lambda: a.node.height >= 3, 30)
            url = f"http://127.0.0.1:{a.http_addr[1]}/status"
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(None, lambda: urllib.request.urlopen(url, timeout=5).read())
            return json.loads(raw)
        finally:
            await a.stop()

    st = asyncio.run(main_())
    assert st["height"] == 3 and st["round"] == 3 and st["done"] and st["peers"] == []
    assert st["head"].startswith("0x") and len(st["head"]) == 66
    assert 0.0 <= st["test_error"] <= 1.0 and st["holders"] == [0, 1, 2, 3]


def test_node_init_prints_the_address_of_a_private_key(tmp_path, capsys):
    d = tmp_path / "n"
    assert main(["node", "--data-dir", str(d), "--init"]) == 0
    addr = capsys.readouterr().out.strip()
    assert addr == "0x" + load_or_create_key(d / "node.key").address.hex()
    assert (d / "node.key").stat().st_mode & 0o077 == 0
    assert main(["node", "--data-dir", str(d), "--listen", "nowhere"]) == 2
    assert "must be HOST:PORT" in capsys.readouterr().err
