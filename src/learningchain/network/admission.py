"""Who may become a peer: the handshake and the slots (a part of :class:`~.tcp.Transport`).

Each side sends HELLO (with a fresh nonce) as its first frame, then AUTH, its node
key's signature over this TLS session and both nonces; a peer whose AUTH is not
signed by the node id its HELLO claims is refused. An authenticated peer then
needs a slot: inbound slots are bounded per host, and a crowded host gives up its
least useful slot to a newcomer from elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import DecodeError
from ..types import hexstr
from .peer import FrameError, Peer, PeerClosed
from .secure import peer_fingerprint, sign_auth, verify_auth
from .wire import MAX_HANDSHAKE_FRAME, PROTOCOL_VERSION, Kind, decode_error, decode_hello, encode_error

__all__ = ["Admission", "KnownAddress"]

log = logging.getLogger("learningchain.net")


@dataclass
class KnownAddress:
    host: str
    port: int
    bootstrap: bool = False
    failures: int = 0
    next_try: float = 0.0


class Admission:
    """The handshake and slot rules of a :class:`~.tcp.Transport`."""

    async def _handshake(self, peer: Peer) -> bool:
        where = f"{peer.remote[0]}:{peer.remote[1]}"
        deadline = time.monotonic() + self.cfg.handshake_timeout_s
        frame = await self._handshake_frame(peer, where, deadline, "hello")
        if frame is None or not await self._check_hello(peer, where, *frame):
            return False
        return await self._authenticate(peer, where, deadline)

    async def _handshake_frame(self, peer: Peer, where: str, deadline: float, what: str) -> Optional[tuple]:
        """The next frame of the handshake, or None (refused, closed, or an ERROR from the peer)."""
        try:
            kind, payload = await asyncio.wait_for(peer.read_frame(MAX_HANDSHAKE_FRAME),
                                                   max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.refuse("handshake-timeout", f"connection {where}: no {what} within "
                                             f"{self.cfg.handshake_timeout_s:g} s")
            return None
        except FrameError as exc:
            self.refuse(exc.reason, f"handshake from {where}: {exc}")
            if exc.reason == "oversized":  # no honest node sends one: closed unread, its host banned
                self.ban_host(peer.remote[0], f"a handshake frame over {MAX_HANDSHAKE_FRAME} bytes")
            return None
        except PeerClosed:
            return None
        if kind == Kind.ERROR:
            try:
                text = decode_error(payload)
            except DecodeError as exc:
                text = f"(undecodable error: {exc})"
            log.warning("%s: peer %s refused us: %s", self.name, where, text)
            return None
        return kind, payload

    def _session(self, peer: Peer) -> tuple[bytes, bytes, bytes]:
        """(fingerprint of the listener's certificate, initiator nonce, responder nonce)."""
        if self.tls is None:
            fp = b"\x00" * 32
        elif peer.outbound:
            fp = peer_fingerprint(peer.writer) or b""
        else:
            fp = self.tls.fingerprint
        ours, theirs = peer.nonce, peer.hello.nonce
        return (fp, ours, theirs) if peer.outbound else (fp, theirs, ours)

    async def _authenticate(self, peer: Peer, where: str, deadline: float) -> bool:
        """Send our AUTH, and accept the peer only if its AUTH is signed by the id it claims."""
        fp, initiator, responder = self._session(peer)
        role = 0 if peer.outbound else 1
        peer.write_now(Kind.AUTH, sign_auth(self.key, self.genesis_hash, fp, initiator, responder, role))
        frame = await self._handshake_frame(peer, where, deadline, "auth")
        if frame is None:
            return False
        kind, payload = frame
        if kind != Kind.AUTH or not verify_auth(payload, peer.hello.node_id, self.genesis_hash, fp, initiator,
                                                responder, 1 - role):
            what = "no auth" if kind != Kind.AUTH else "an auth not signed by that id for this session"
            self.refuse("bad-auth", f"connection {where} claimed node id {hexstr(peer.hello.node_id)[:12]} "
                                    f"but sent {what}")
            peer.write_now(Kind.ERROR, encode_error("bad-auth: the handshake was not signed by the claimed node id"))
            peer.hello = None  # nothing it claimed is trusted (labels, bans, peer exchange)
            return False
        if self.banned(peer.hello.node_id):
            self.refuse("banned", f"peer {peer.label()} is banned", level=logging.INFO)
            peer.write_now(Kind.ERROR, encode_error("banned"))
            return False
        return True

    async def _check_hello(self, peer: Peer, where: str, kind: int, payload: bytes) -> bool:
        if kind != Kind.HELLO:
            self.refuse("no-hello", f"connection {where}: first frame is kind {kind}, not hello")
            peer.write_now(Kind.ERROR, encode_error("expected hello"))
            return False
        try:
            hello = decode_hello(payload)
        except DecodeError as exc:
            self.refuse("malformed", f"hello from {where}: {exc}")
            peer.write_now(Kind.ERROR, encode_error(f"malformed hello: {exc}"))
            return False
        peer.hello = hello
        if hello.version != PROTOCOL_VERSION:
            text = f"protocol version {hello.version}, this node speaks {PROTOCOL_VERSION}"
            self.refuse("wrong-version", f"peer {peer.label()}: {text}")
            peer.write_now(Kind.ERROR, encode_error(f"wrong-version: {text}"))
            return False
        if hello.genesis != self.genesis_hash:
            text = (f"peer follows the chain with genesis {hexstr(hello.genesis)[:18]}, this node follows "
                    f"{hexstr(self.genesis_hash)[:18]} (another config or seed)")
            self.refuse("wrong-genesis", f"peer {peer.label()}: {text}", level=logging.ERROR)
            peer.write_now(Kind.ERROR, encode_error(f"wrong-genesis: {text}"))
            return False
        if hello.node_id == self.node_id:
            log.debug("%s: %s is this node itself", self.name, where)
            if peer.dialed:
                self.blocked_hosts.add(peer.dialed)
            return False
        if peer.address in self.blocked_hosts:
            self.refuse("denied", f"peer {peer.label()} is on the deny list", level=logging.INFO)
            return False
        return True

    def _inbound_refusal(self, ip: str) -> str:
        """Why a new inbound connection from ``ip`` must wait ("" when it may start its handshake).

        Handshakes in flight are bounded on their own (in total and per IP), so
        that connections that never finish one cannot hold the peer slots; an
        IP holds at most ``max_inbound_per_ip`` connections of either kind.
        """
        c = self.cfg
        pending_from = sum(1 for p in self.pending if not p.outbound and p.remote[0] == ip)
        if len(self.pending) >= c.max_pending:
            return f"{len(self.pending)} handshakes in flight (max_pending)"
        if pending_from >= c.max_pending_per_ip:
            return f"{pending_from} handshakes in flight from this host (max_pending_per_ip)"
        established_from = sum(1 for p in self.peers.values() if not p.outbound and p.remote[0] == ip)
        if pending_from + established_from >= c.max_inbound_per_ip:
            return f"{pending_from + established_from} connections from this host (max_inbound_per_ip)"
        return ""

    def _make_room(self, peer: Peer) -> bool:
        """Room for an authenticated inbound ``peer``: inbound slots are max_peers - outbound_slots.

        When they are full, the newcomer may take the slot of an inbound peer
        from the host holding the most inbound slots (if that is more than the
        newcomer's host holds), the one that has been of least use longest; so
        one host cannot keep out everyone else, and the slots this node dials
        stay free for its own choice of peers.
        """
        inbound = [p for p in self.peers.values() if not p.outbound]
        if len(inbound) < self.cfg.max_peers - self.cfg.outbound_slots:
            return True
        per_ip: dict = {}
        for p in inbound:
            per_ip.setdefault(p.remote[0], []).append(p)
        crowd = max(per_ip.values(), key=len)
        if len(crowd) <= len(per_ip.get(peer.remote[0], ())) + 1:
            return False
        victim = min(crowd, key=lambda p: p.last_useful)
        self.refuse("evicted", f"peer {victim.label()}: its host holds {len(crowd)} inbound slots; "
                               f"making room for {peer.label()}", level=logging.INFO)
        victim.write_now(Kind.ERROR, encode_error("evicted: this node's inbound slots are full"))
        victim.close("evicted")
        return True

    def _register(self, peer: Peer) -> bool:
        if peer.address in self.blocked_hosts:
            # denied while its authentication was awaited: the hello check alone is not enough
            self.refuse("denied", f"peer {peer.label()} is on the deny list", level=logging.INFO)
            return False
        if peer.close_reason:  # closed during its handshake (a deny of the address it was dialed at)
            return False
        if not peer.outbound and peer.node_id not in self.peers and not self._make_room(peer):
            self.refuse("too-many-peers", f"peer {peer.label()}: all "
                                          f"{self.cfg.max_peers - self.cfg.outbound_slots} inbound slots are taken",
                        level=logging.INFO)
            peer.write_now(Kind.ERROR, encode_error("too many peers"))
            return False
        other = self.peers.get(peer.node_id)
        if other is not None:
            # Keep the connection opened by the lower node id; both ends decide alike.
            def opener(p: Peer) -> bytes:
                return self.node_id if p.outbound else p.node_id

            keep_new = opener(peer) < opener(other)
            if not keep_new:
                log.debug("%s: duplicate connection to %s closed", self.name, peer.label())
                return False
            other.close("duplicate connection")
        self.peers[peer.node_id] = peer
        addr = peer.address
        if addr is not None:
            entry = self.addresses.get(addr)
            if entry is None and len(self.addresses) < 1024:
                entry = self.addresses[addr] = KnownAddress(addr[0], addr[1])
            if entry is not None:
                entry.failures = 0
        return True
