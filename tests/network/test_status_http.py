"""The status API survives whoever can reach it: loopback by default, slow and
idle clients closed, a connection cap, and a loop error handler that cannot flood."""

import asyncio
import json
import logging
import socket
import time
import urllib.request

from learningchain.cli.netcmd import status_address
from learningchain.network.status_http import RateLimitedExceptionHandler, StatusServer

from .netkit import small_conf, start, wait_until


def _get(port, path="/status"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, json.loads(r.read())


def test_status_binds_to_loopback_even_when_p2p_listens_everywhere():
    assert status_address(("0.0.0.0", 30333), None) == ("127.0.0.1", 30334)
    assert status_address(("0.0.0.0", 0), "") == ("127.0.0.1", 0)
    assert status_address(("0.0.0.0", 30333), "off") is None
    assert status_address(("127.0.0.1", 30333), "0.0.0.0:9000") == ("0.0.0.0", 9000)


def test_slow_clients_are_closed_and_do_not_block_the_node_status(tmp_path):
    """100 connections that never finish their request head (slow loris): at most
    the cap are held, a prompt request is answered while they are, and the rest
    are closed after the head timeout."""
    conf = small_conf(rounds=2)
    n = 100

    def open_slow(port):
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            socks.append(s)
        return socks

    async def main_():
        a = await start(conf, tmp_path, "a", holder_indices="0-3", http=("127.0.0.1", 0))
        srv = a._http_runner
        srv.header_timeout = 3.0
        socks = []
        try:
            await wait_until(lambda: a.node.height >= 2, 30)
            port = a.http_addr[1]
            loop = asyncio.get_running_loop()
            socks = await loop.run_in_executor(None, open_slow, port)
            peak = srv.open_connections
            code, st = await loop.run_in_executor(None, _get, port)  # while the slow ones are still held
            await wait_until(lambda: srv.open_connections == 0, 10, "slow clients closed")
            return peak, srv.timed_out, srv.refused, code, st
        finally:
            for s in socks:
                s.close()
            await a.stop()

    peak, timed_out, refused, code, st = asyncio.run(main_())
    assert peak <= 32
    assert refused >= 1 and timed_out >= 1 and refused + timed_out >= n  # each closed one way or the other
    assert code == 200 and st["height"] == 2


def test_unknown_paths_methods_and_garbage_get_an_error_not_a_crash():
    async def main_():
        srv = StatusServer(lambda evaluate: {"evaluate": evaluate}, port=0, header_timeout=1.0)
        host, port = await srv.start()
        loop = asyncio.get_running_loop()

        def raw(data):
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(data)
                out = b""
                while chunk := s.recv(4096):
                    out += chunk
                return out

        try:
            replies = {}
            for name, data in {"ok": b"GET /status?eval=0 HTTP/1.1\r\n\r\n",
                               "missing": b"GET /nope HTTP/1.1\r\n\r\n",
                               "post": b"POST /status HTTP/1.1\r\n\r\n",
                               "garbage": b"\xff\xfe\x00 nonsense\r\n\r\n",
                               "huge": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"}.items():
                replies[name] = await loop.run_in_executor(None, raw, data)
            return replies
        finally:
            await srv.close()

    r = asyncio.run(main_())
    assert r["ok"].startswith(b"HTTP/1.1 200") and b'"evaluate": false' in r["ok"]
    assert r["missing"].startswith(b"HTTP/1.1 404")
    assert r["post"].startswith(b"HTTP/1.1 405")
    assert r["garbage"].startswith(b"HTTP/1.1 400")
    assert r["huge"].startswith(b"HTTP/1.1 431")


def test_loop_errors_are_logged_at_most_burst_times_a_window():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("test.ratelimit")
    logger.propagate = False
    logger.addHandler(Collect())
    now = [0.0]
    handler = RateLimitedExceptionHandler(logger, burst=5, window=60.0, clock=lambda: now[0])
    for _ in range(1000):
        handler(None, {"message": "socket.accept() out of system resource", "exception": OSError(24, "EMFILE")})
    assert len(records) == 5 and handler.dropped == 995
    now[0] = 61.0
    handler(None, {"message": "again"})
    assert "995 more errors" in records[5] and records[6] == "event loop: again"
