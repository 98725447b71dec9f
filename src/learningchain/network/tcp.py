"""The TCP transport: listening, dialing, the handshake, peer exchange, bans.

It moves frames between this node and its peers and enforces what any peer may
do (frame size, rate, misbehaviour points, bans); what the frames mean for the
chain is the handler's business (:class:`~learningchain.network.daemon.NodeDaemon`).

Every connection is TLS 1.3 (see :mod:`~learningchain.network.secure`).
Handshake: each side sends HELLO (with a fresh nonce) as its first frame, then
AUTH, its node key's signature over this TLS session and both nonces; both must
arrive within ``handshake_timeout_s``. A peer whose AUTH is not signed by the
node id its HELLO claims is refused, so every id the transport keeps, scores or
bans is authenticated. A peer of another protocol version or genesis is sent an
ERROR naming the mismatch and disconnected; so is a connection to ourselves, a
banned node, and a second connection to a node we already talk to (the one
opened by the node with the lower id is kept, so both ends keep the same one).
Bans apply to the authenticated node id and, off loopback, to the remote IP;
never to an address a peer merely claims. The handshake and the slot rules are
in :mod:`.admission`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
import secrets
import time
from typing import Optional, Protocol

from ..errors import ConfigError, DecodeError, LearningChainError
from .config import NetworkConfig
from .peer import FrameError, Peer, PeerClosed
from .admission import Admission, KnownAddress
from .secure import NONCE_SIZE, TLSContexts
from .wire import (
    PROTOCOL_VERSION,
    Hello,
    Kind,
    decode_error,
    decode_peers,
    decode_ping,
    encode_error,
    encode_hello,
    encode_messages,
    encode_peers,
    encode_ping,
)

__all__ = ["Transport", "Handler", "parse_hostport", "Penalty"]

log = logging.getLogger("learningchain.net")

#: Misbehaviour points per kind of fault; a peer reaching ``max_misbehaviour`` is banned.
class Penalty:
    MALFORMED = 25
    UNKNOWN_KIND = 10
    INVALID_MESSAGE = 10
    INVALID_BLOCK = 50
    UNSOLICITED = 5
    SYNC_STALL = 20  # a sync that timed out, delivered nothing new, or ended short of the claimed work


def parse_hostport(text: str, *, what: str = "address") -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"{what} {text!r} must be HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port {port} is out of range")
    return host or "127.0.0.1", port


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Handler(Protocol):
    def hello(self) -> Hello: ...

    def on_peer(self, peer: Peer) -> None: ...

    def on_frame(self, peer: Peer, kind: int, payload: bytes) -> None: ...

    def on_peer_closed(self, peer: Peer) -> None: ...


class Transport(Admission):
    def __init__(self, handler: Handler, *, genesis_hash: bytes, key, config: NetworkConfig,
                 listen: Optional[tuple[str, int]] = None, advertise: Optional[tuple[str, int]] = None,
                 bootstrap: tuple = (), name: str = "", tls: bool = True):
        self.handler = handler
        self.genesis_hash = genesis_hash
        self.key = key
        self.node_id = key.address
        # tls=False (benchmarks only: the cost of encryption) keeps the signed
        # challenge but binds it to no session, so a relay could pass it on.
        self.tls = TLSContexts() if tls else None
        self.cfg = config
        self.listen = listen
        self.advertise = advertise
        self.name = name
        self.peers: dict[bytes, Peer] = {}  # node id -> peer, after the handshake
        self.pending: set = set()  # connections in their handshake
        self.addresses: dict[tuple[str, int], KnownAddress] = {}
        for host, port in bootstrap:
            self.addresses[(host, port)] = KnownAddress(host, port, bootstrap=True)
        self.bans: dict[object, float] = {}  # node id or remote host -> until (monotonic)
        self.refusals: dict[str, int] = {}  # reason -> count (for /status and tests)
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set = set()
        self._dialing: set = set()
        self._stopping = False
        self.blocked_hosts: set = set()  # listen addresses never dialed nor accepted (ourselves, denied nodes)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        if self.listen is not None:
            host, port = self.listen
            # Plain TCP first: a connection is counted against the slot limits
            # before the TLS handshake (see _run_connection), so half-open TLS
            # handshakes cannot hold file descriptors beyond max_pending.
            self._server = await asyncio.start_server(self._accept, host, port, limit=1 << 16)
            sock = self._server.sockets[0].getsockname()
            self.listen = (host, int(sock[1]))
            if self.advertise is None:
                self.advertise = (host if host not in ("0.0.0.0", "::", "") else "127.0.0.1", int(sock[1]))
            elif self.advertise[1] == 0:
                self.advertise = (self.advertise[0], int(sock[1]))
        self._spawn(self._maintain())

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers.values()) + list(self.pending):
            peer.close("node shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except (asyncio.TimeoutError, Exception):
                pass

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- bookkeeping ------------------------------------------------------------------
    def refuse(self, reason: str, text: str, *, level: int = logging.WARNING) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        log.log(level, "%s refused (%s) %s", self.name, reason, text)

    def banned(self, key) -> bool:
        until = self.bans.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self.bans[key]
            return False
        return True

    def ban_host(self, host: str, reason: str) -> None:
        """Refuse connections from the IP ``host`` for ``ban_seconds`` (off loopback only:
        nodes on one machine share it)."""
        if _is_loopback(host):
            return
        self.bans[host] = time.monotonic() + self.cfg.ban_seconds
        log.warning("%s banned host %s for %.0f s: %s", self.name, host, self.cfg.ban_seconds, reason)

    def ban(self, peer: Peer, reason: str) -> None:
        until = time.monotonic() + self.cfg.ban_seconds
        if peer.hello is not None and peer.hello.node_id not in (self.node_id,):
            self.bans[peer.node_id] = until  # authenticated by the handshake
        if not _is_loopback(peer.remote[0]):
            self.bans[peer.remote[0]] = until
        log.warning("%s banned %s for %.0f s: %s", self.name, peer.label(), self.cfg.ban_seconds, reason)
        peer.send(Kind.ERROR, encode_error(f"banned: {reason}"))
        peer.close(f"banned: {reason}")

    def penalize(self, peer: Peer, points: int, reason: str, detail: str) -> None:
        """Refuse what a peer sent, log why, and ban it once its points add up."""
        peer.score += points
        self.refuse(reason, f"from {peer.label()}: {detail} (misbehaviour {peer.score}/"
                            f"{self.cfg.max_misbehaviour})")
        if peer.score >= self.cfg.max_misbehaviour:
            self.ban(peer, f"misbehaviour {peer.score} (last: {reason})")

    def deny(self, address: tuple[str, int]) -> None:
        """Stop talking to the node listening at ``address`` (a firewall rule, e.g. a partition)."""
        self.blocked_hosts.add(address)
        # connections in their handshake too: one past its hello check would otherwise
        # register after the deny (its authentication is awaited in between)
        for peer in list(self.peers.values()) + list(self.pending):
            if peer.address == address or (peer.dialed is not None and tuple(peer.dialed) == tuple(address)):
                peer.close("denied")

    def allow(self, address: tuple[str, int]) -> None:
        self.blocked_hosts.discard(address)
        entry = self.addresses.get(address)
        if entry is not None:
            entry.failures, entry.next_try = 0, 0.0

    def connected_addresses(self) -> set:
        return {p.address for p in self.peers.values() if p.address is not None}

    def learn(self, addresses, *, source: str = "") -> None:
        for host, port in addresses:
            key = (host, port)
            if key == self.advertise or key in self.addresses or len(self.addresses) >= 1024:
                continue
            self.addresses[key] = KnownAddress(host, port)

    # -- sending ----------------------------------------------------------------------
    def broadcast(self, kind: int, payload: bytes, item: Optional[bytes] = None,
                  exclude: Optional[Peer] = None) -> int:
        sent = 0
        for peer in list(self.peers.values()):
            if peer is exclude or (item is not None and item in peer.known):
                continue
            if peer.send(kind, payload):
                if item is not None:
                    peer.known.add(item)
                sent += 1
        return sent

    def broadcast_messages(self, items, exclude: Optional[Peer] = None) -> None:
        """Gossip holders' messages ``[(hash, raw), ...]``: to each peer, in one frame, those
        it is not known to have."""
        for peer in list(self.peers.values()):
            if peer is exclude:
                continue
            fresh = [(h, raw) for h, raw in items if h not in peer.known]
            if not fresh:
                continue
            if len(fresh) == 1:
                ok = peer.send(Kind.MESSAGE, fresh[0][1])
            else:
                ok = peer.send(Kind.MESSAGES, encode_messages([raw for _, raw in fresh]))
            if ok:
                for h, _ in fresh:
                    peer.known.add(h)

    # -- connections ------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Called from connection_made, before any byte is read: hold the bytes in the
        # kernel until TLS takes over the connection (start_tls would lose bytes
        # already buffered in the reader).
        if self.tls is not None:
            writer.transport.pause_reading()
        self._spawn(self._run_inbound(reader, writer))

    async def _run_inbound(self, reader, writer) -> None:
        try:
            await self._run_connection(reader, writer, outbound=False, dialed=None)
        except asyncio.CancelledError:
            pass  # the node is stopping

    async def dial(self, host: str, port: int) -> bool:
        key = (host, port)
        if key in self._dialing or key in self.connected_addresses() or key in self.blocked_hosts:
            return False
        self._dialing.add(key)
        try:
            try:
                tls = {"ssl": self.tls.client, "server_hostname": "",
                       "ssl_handshake_timeout": self.cfg.handshake_timeout_s} if self.tls else {}
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 16, **tls),
                                                        5.0 + self.cfg.handshake_timeout_s)
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                log.debug("%s could not reach %s:%d: %s", self.name, host, port, exc)
                return False
            self._spawn(self._run_connection(reader, writer, outbound=True, dialed=key))
            return True
        finally:
            self._dialing.discard(key)

    def _make_peer(self, reader, writer, *, outbound: bool, dialed) -> Peer:
        c = self.cfg
        return Peer(reader, writer, outbound=outbound, dialed=dialed, max_frame=c.max_frame_bytes,
                    rate_frames=c.rate_frames, burst_frames=c.burst_frames, rate_bytes=c.rate_bytes,
                    burst_bytes=c.burst_bytes)

    async def _run_connection(self, reader, writer, *, outbound: bool, dialed) -> None:
        peer = self._make_peer(reader, writer, outbound=outbound, dialed=dialed)
        if self._stopping:
            peer.close("shutting down")
            return
        if not outbound and (self.banned(peer.remote[0])):
            self.refuse("banned", f"connection from banned host {peer.remote[0]}", level=logging.INFO)
            peer.close("banned")
            return
        if not outbound:
            why = self._inbound_refusal(peer.remote[0])
            if why:
                self.refuse("too-many-peers", f"connection from {peer.remote[0]}:{peer.remote[1]}: {why}",
                            level=logging.INFO)
                peer.close("too many peers")
                return
        self.pending.add(peer)
        registered = False
        try:
            if not outbound and self.tls is not None:
                try:
                    await asyncio.wait_for(writer.start_tls(self.tls.server), self.cfg.handshake_timeout_s)
                except asyncio.TimeoutError:
                    self.refuse("handshake-timeout", f"connection {peer.remote[0]}:{peer.remote[1]}: no TLS "
                                                     f"handshake within {self.cfg.handshake_timeout_s:g} s")
                    return
                except (OSError, ValueError, ConnectionError) as exc:  # ssl.SSLError is an OSError
                    self.refuse("tls", f"connection {peer.remote[0]}:{peer.remote[1]}: TLS handshake failed: "
                                       f"{exc.__class__.__name__}", level=logging.INFO)
                    return
            peer.nonce = secrets.token_bytes(NONCE_SIZE)
            peer.write_now(Kind.HELLO, encode_hello(dataclasses.replace(self.handler.hello(), nonce=peer.nonce)))
            if not await self._handshake(peer):
                return
            if not self._register(peer):
                return
            registered = True
            peer.start_writer()
            self.pending.discard(peer)
            if self.cfg.peer_exchange:
                peer.send(Kind.GET_PEERS)
            self.handler.on_peer(peer)
            log.info("%s connected to %s (%s)", self.name, peer.label(), "out" if outbound else "in")
            await self._read_loop(peer)
        except asyncio.CancelledError:
            peer.close("cancelled")
            raise
        finally:
            self.pending.discard(peer)
            if registered:
                if self.peers.get(peer.node_id) is peer:
                    del self.peers[peer.node_id]
                peer.close(peer.close_reason or "disconnected")
                try:
                    self.handler.on_peer_closed(peer)
                finally:
                    log.info("%s disconnected from %s: %s", self.name, peer.label(), peer.close_reason)
            else:
                peer.close(peer.close_reason or "handshake failed")
                entry = self.addresses.get(dialed) if dialed else None
                if entry is not None:  # back off from an address that refuses us
                    entry.failures += 1
                    entry.next_try = time.monotonic() + min(30.0, self.cfg.reconnect_s * 2 ** min(entry.failures, 6))
            await peer.wait_closed(1.0)

    async def _read_loop(self, peer: Peer) -> None:
        handler = self.handler
        frames = 0
        while not peer.closed.is_set():
            try:
                kind, payload = await peer.read_frame()
            except FrameError as exc:
                if exc.fatal:
                    self.refuse(exc.reason, f"frame from {peer.label()}: {exc.detail}; disconnecting")
                    if exc.reason == "oversized":
                        self.ban(peer, str(exc))
                    else:
                        peer.close(str(exc))
                    return
                self.penalize(peer, Penalty.MALFORMED, exc.reason, exc.detail)
                continue
            except PeerClosed as exc:
                peer.close_reason = peer.close_reason or str(exc)
                return
            if peer.close_reason:  # closed by this node (denied, banned): nothing more it sent is heard
                return
            size = len(payload) + 5
            if not peer.solicited(kind, payload) and not peer.within_limits(size):
                self.refuse("flooding", f"frames from {peer.label()}: more than {self.cfg.rate_frames:g} frames/s "
                                        f"or {self.cfg.rate_bytes:.0f} bytes/s sustained; disconnecting")
                self.ban(peer, "flooding")
                return
            try:
                self._dispatch(peer, kind, payload)
            except DecodeError as exc:
                self.penalize(peer, Penalty.MALFORMED, "malformed", f"kind {kind}: {exc}")
            except LearningChainError as exc:
                log.warning("%s: frame kind %d from %s not handled: %s", self.name, kind, peer.label(), exc)
            except Exception:  # a bug must not take the node down; say where it was
                log.exception("%s: internal error handling frame kind %d from %s", self.name, kind, peer.label())
            frames += 1
            if frames % 16 == 0:
                await asyncio.sleep(0)  # let the rest of the node breathe during a burst

    def _dispatch(self, peer: Peer, kind: int, payload: bytes) -> None:
        if kind == Kind.PING:
            peer.send(Kind.PONG, encode_ping(decode_ping(payload)))
        elif kind == Kind.PONG:
            decode_ping(payload)
        elif kind == Kind.GET_PEERS:
            if payload:
                raise DecodeError(f"get-peers carries no payload, got {len(payload)} bytes")
            addrs = [a for a in self.connected_addresses() if a != peer.address]
            addrs += [k for k, v in self.addresses.items() if v.failures == 0 and k not in addrs]
            peer.send(Kind.PEERS, encode_peers(addrs[:64]))
        elif kind == Kind.PEERS:
            if self.cfg.peer_exchange:
                self.learn(decode_peers(payload), source=peer.label())
            else:
                decode_peers(payload)
        elif kind == Kind.ERROR:
            log.warning("%s: peer %s says: %s", self.name, peer.label(), decode_error(payload))
        elif kind == Kind.HELLO:
            self.penalize(peer, Penalty.MALFORMED, "unexpected-hello", "a second hello on one connection")
        elif kind in Kind._value2member_map_:
            peer.last_useful = time.monotonic()
            self.handler.on_frame(peer, kind, payload)
        else:
            self.penalize(peer, Penalty.UNKNOWN_KIND, "unknown-type", f"frame kind {kind} is not part of protocol "
                                                                      f"version {PROTOCOL_VERSION}")

    # -- keeping connected ----------------------------------------------------------------
    async def _maintain(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for peer in list(self.peers.values()):
                idle = now - peer.last_heard
                if idle > self.cfg.idle_timeout_s:
                    peer.close(f"silent for {idle:.0f} s")
                elif idle > self.cfg.ping_interval_s:
                    peer.send(Kind.PING, encode_ping(random.getrandbits(63)))
            if len(self.peers) < self.cfg.target_peers:
                connected = self.connected_addresses()
                candidates = [a for k, a in self.addresses.items()
                              if k not in connected and k != self.advertise and k not in self.blocked_hosts
                              and a.next_try <= now and not self.banned(k)]
                candidates.sort(key=lambda a: (not a.bootstrap, a.failures))
                for entry in candidates[: max(0, self.cfg.target_peers - len(self.peers))]:
                    self._spawn(self._dial_entry(entry))
            await asyncio.sleep(0.25)

    async def _dial_entry(self, entry: KnownAddress) -> None:
        ok = await self.dial(entry.host, entry.port)
        if ok:
            entry.next_try = time.monotonic() + self.cfg.reconnect_s
            return
        entry.failures += 1
        cap = 8 * self.cfg.reconnect_s if entry.bootstrap else 60.0
        entry.next_try = time.monotonic() + min(cap, self.cfg.reconnect_s * 2 ** min(entry.failures, 10))
        if not entry.bootstrap and entry.failures >= 8:
            self.addresses.pop((entry.host, entry.port), None)
