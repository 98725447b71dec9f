"""Helpers for network tests: small chains, daemons in one event loop, a raw peer."""

from __future__ import annotations

import asyncio
import secrets
import time

import numpy as np

from learningchain.network.config import load_net_config
from learningchain.network.daemon import NodeDaemon
from learningchain.crypto import PrivateKey, sha256
from learningchain.network.secure import TLSContexts, peer_fingerprint, sign_auth
from learningchain.network.wire import (
    PROTOCOL_VERSION,
    Hello,
    Kind,
    decode_error,
    decode_hello,
    encode_frame,
    encode_hello,
)
from learningchain.node.store import SQLiteStore
from learningchain.protocol import Block, build_block
from learningchain.protocol.consensus import solve_pow

from ..helpers import make_keys, message_for


def small_conf(*, rounds=8, holders=4, seed=0, **network):
    """Breast cancer, K holders, no noise, a fixed low difficulty and short waits."""
    net = {"interval_ms": 0, "collect_ms": 300, "reconnect_s": 0.2, "handshake_timeout_s": 3.0}
    net.update(network)
    return load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": holders, "rounds": rounds,
                                                  "seed": seed, "no_dp": True, "difficulty": 8},
                           network_overrides=net)


async def start(conf, path, name, **kw) -> NodeDaemon:
    d = NodeDaemon(conf, data_dir=path / name, name=name, **kw)
    await d.start()
    return d


async def wait_until(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def same_head(daemons, height):
    return all(d.node.height >= height for d in daemons) and len({d.node.head_hash for d in daemons}) == 1


def canonical(path):
    """Canonical hashes read straight from a stored chain (independent of the Node)."""
    store = SQLiteStore(path, create=False)
    try:
        return [store.canonical_hash(h) for h in range(store.canonical_length())]
    finally:
        store.close()


def all_stored(path):
    store = SQLiteStore(path, create=False)
    try:
        return {bytes(r[0]) for r in store._db.execute("SELECT hash FROM blocks")}
    finally:
        store.close()


def forged_round(daemon, n=4, seed=99, parent=None, timestamp=None):
    """Valid messages from fresh keys at the daemon's head, and a valid sealed block of them
    (stamped a second after its parent, or at ``timestamp``)."""
    node = daemon.node
    parent = parent or node.head
    rng = np.random.default_rng(seed)
    keys = make_keys(n, seed=seed)
    msgs = [message_for(k, node.params, parent, rng.normal(size=node.params.dim)) for k in keys]
    blk = build_block(parent, msgs, node.params, genesis_hash=node.genesis_hash, miner=b"\x07" * 20,
                      timestamp=parent.header.timestamp + 1000 if timestamp is None else timestamp,
                      difficulty=node.next_difficulty(parent.header))
    return msgs, Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)


_TLS = []


def _client_tls():
    """A TLS client context as nodes use (the certificate is checked by AUTH, not a CA)."""
    if not _TLS:
        _TLS.append(TLSContexts().client)
    return _TLS[0]


class RawPeer:
    """A hand-driven connection that speaks the real handshake (TLS, HELLO, AUTH)
    with its own node key, then sends whatever bytes a test wants.

    ``node_id`` picks the key (derived from it), so the same ``node_id`` is the
    same authenticated node across connections; the peer's real id is
    ``self.node_id``. ``claim`` makes the HELLO claim another id than the key's
    (a spoofer: its AUTH cannot match); ``auth=False`` sends no AUTH.
    """

    def __init__(self, reader, writer, key=None):
        self.reader, self.writer = reader, writer
        self.key = key
        self.node_id = key.address if key is not None else None

    @classmethod
    async def connect(cls, daemon, *, genesis=None, **kw):
        host, port = daemon.transport.advertise
        return await cls.dial(host, port, genesis or daemon.genesis.hash, **kw)

    @classmethod
    async def dial(cls, host, port, genesis, *, node_id=b"\xee" * 20, hello=True, auth=True, claim=None,
                   work=0, head=None, tls=True, local_host=None):
        ctx = _client_tls() if tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="" if tls else None,
                                                       local_addr=(local_host, 0) if local_host else None)
        key = PrivateKey(sha256(b"rawpeer" + node_id))
        peer = cls(reader, writer, key)
        if hello:
            nonce = secrets.token_bytes(32)
            h = Hello(PROTOCOL_VERSION, genesis, claim or key.address, "", 0, 0, head or genesis, work, "", nonce)
            peer.send(Kind.HELLO, encode_hello(h))
            if auth:
                theirs = await peer.read_hello()
                if theirs is not None:
                    fp = peer_fingerprint(writer) or b"\x00" * 32
                    peer.send(Kind.AUTH, sign_auth(key, genesis, fp, nonce, theirs.nonce, 0))
        return peer

    async def read_hello(self, timeout=5.0):
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            body = await asyncio.wait_for(self.reader.readexactly(int.from_bytes(head, "little")), timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return None
        return decode_hello(body[1:]) if body[0] == Kind.HELLO else None

    def send(self, kind, payload=b""):
        self.writer.write(encode_frame(kind, payload))

    def send_raw(self, raw):
        self.writer.write(raw)

    async def frames(self, timeout=3.0):
        """Every frame until the connection ends or ``timeout`` passes."""
        out = []
        try:
            while True:
                head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
                n = int.from_bytes(head, "little")
                body = await asyncio.wait_for(self.reader.readexactly(n), timeout)
                out.append((body[0], body[1:]))
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        return out

    async def closed_by_peer(self, timeout=5.0) -> bool:
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
                if not data:
                    return True
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self):
        self.writer.close()


def errors_in(frames):
    return [decode_error(p) for k, p in frames if k == Kind.ERROR]
