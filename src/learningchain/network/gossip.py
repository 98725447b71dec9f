"""The daemon's gossip role: frames in, the node's policy asked, its actions applied.

What to do with a block or a message is decided by the sans-I/O
:class:`~learningchain.node.policy.NodePolicy` (the same object the in-process
simulation drives); this part of :class:`~.daemon.NodeDaemon` only decodes
frames, passes the peer (the policy's opaque source) and the time in, and turns
the actions into relays, fetches, log lines and misbehaviour points.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from ..errors import DecodeError
from ..node.actions import (Accepted, Admitted, Deferred, Expired, Held, MessageRefused, NewHead, Orphan, Parked,
                            Refused)
from ..protocol.block import Block, decode_block
from ..protocol.message import decode_message
from ..types import hexstr
from .peer import Peer
from .tcp import Penalty
from .wire import Kind, block_hash_of, decode_blocks_end, decode_get_block, decode_get_blocks, decode_messages, \
    decode_pruned, decode_sync_block, message_hash_of

__all__ = ["GossipRole", "now_ms"]

log = logging.getLogger("learningchain.net")


#: Messages of one frame judged before the node looks again whether their sender is banned.
MESSAGE_SLICE = 64


def now_ms() -> int:
    """The policy's clock: monotonic milliseconds (deadlines only, never consensus)."""
    return int(time.monotonic() * 1000)


class GossipRole:
    """Frames, messages and blocks of a :class:`~.daemon.NodeDaemon` (a part of it)."""

    # -- the policy's pools, as tests and the status see them -------------------------------
    @property
    def seen(self):
        return self.policy.seen

    @property
    def deferred(self):
        return self.policy.deferred

    @property
    def deferred_bytes(self) -> int:
        return self.policy.deferred_bytes

    @property
    def parked(self):
        return self.policy.parked

    # -- the transport's handler -------------------------------------------------------------
    def on_frame(self, peer: Peer, kind: int, payload: bytes) -> None:
        if kind == Kind.MESSAGE:
            self._on_message_frames(peer, [payload])
        elif kind == Kind.MESSAGES:
            self._on_message_frames(peer, decode_messages(payload))
        elif kind == Kind.BLOCK:
            self._on_block_frame(peer, payload, synced=False)
        elif kind == Kind.SYNC_BLOCK:
            self._on_sync_block(peer, payload)
        elif kind == Kind.BLOCKS_END:
            self._on_blocks_end(peer, *decode_blocks_end(payload))
        elif kind == Kind.PRUNED:
            self._on_pruned(peer, *decode_pruned(payload))
        elif kind == Kind.GET_BLOCKS:
            request, locator, limit = decode_get_blocks(payload)
            self._serve(peer, self._serve_blocks(peer, request, locator, limit))
        elif kind == Kind.GET_BLOCK:
            request, h = decode_get_block(payload)
            self._serve(peer, self._serve_block(peer, request, h))
        else:
            self.transport.penalize(peer, Penalty.UNKNOWN_KIND, "unknown-type", f"frame kind {kind} is not expected here")

    def _on_sync_block(self, peer: Peer, payload: bytes) -> None:
        request, raw = decode_sync_block(payload)
        if request not in peer.requests:
            self.transport.penalize(peer, Penalty.UNSOLICITED, "unsolicited", f"block for request {request}, "
                                                                             "which this node never sent")
            return
        s = self.sync if self.sync is not None and self.sync.peer is peer else None
        stored = len(self.node.headers)
        self._on_block_frame(peer, raw, synced=True)
        if s is not None and s is self.sync:
            s.blocks += 1
            s.request_blocks += 1
            if len(self.node.headers) > stored:
                # only progress keeps a sync alive: a block the node already has (or one
                # it refuses) does not, or a peer could hold the sync for ever with it
                s.request_new += 1
                s.new_blocks += 1
                s.progress_at = s.last_activity = time.monotonic()

    # -- messages ---------------------------------------------------------------------------
    def _on_message_frames(self, peer: Peer, payloads: list) -> None:
        self.messages_received += len(payloads)
        items: list = []
        for payload in payloads:
            if peer.closed.is_set() or peer.close_reason:
                return  # banned for what it sent: the rest of its frame is not read
            h = message_hash_of(payload)
            peer.known.add(h)
            if not self.policy.first_sight(h):
                continue
            try:
                msg = decode_message(payload, max_dim=self.params.dim)
            except DecodeError as exc:
                self.transport.penalize(peer, Penalty.MALFORMED, "malformed", str(exc))
                continue
            items.append((msg, payload))
        # judged a slice at a time, so that a peer banned for the first bad ones does not
        # get a signature check for every message of a large frame
        for i in range(0, len(items), MESSAGE_SLICE):
            if peer.closed.is_set() or peer.close_reason:
                break
            self.apply(self.policy.on_messages(items[i:i + MESSAGE_SLICE], peer, now_ms()))

    def submit_messages(self, msgs) -> int:
        """Messages from the holders this process hosts, gossiped in one batch."""
        for msg in msgs:
            self.policy.mark_seen(msg.hash)
        actions = self.policy.on_messages([(msg, msg.encode()) for msg in msgs], None, now_ms())
        own = {msg.hash for msg in msgs}
        admitted = sum(1 for a in actions if isinstance(a, Admitted) and a.source is None and a.message_hash in own)
        self.messages_sent += admitted
        self.apply(actions)
        return admitted

    # -- blocks ------------------------------------------------------------------------------
    def _on_block_frame(self, peer: Peer, raw: bytes, *, synced: bool) -> None:
        self.blocks_received += 1
        try:
            h = block_hash_of(raw)
        except DecodeError as exc:
            self.transport.penalize(peer, Penalty.MALFORMED, "malformed", f"block: {exc}")
            return
        peer.known.add(h)
        self._fetching.pop(h, None)
        if self.policy.knows_block(h):
            return
        try:
            block = decode_block(raw, max_dim=self.params.dim, max_messages=self.params.max_messages)
        except DecodeError as exc:
            # not marked seen: ``h`` is the hash of a header that may be real, sent with a
            # broken body; the real block must still be taken when it comes
            self.node.rejected_by_reason["malformed"] += 1
            self.transport.penalize(peer, Penalty.MALFORMED, "malformed", f"block {hexstr(h)[:14]}: {exc}")
            return
        self.handle_block(block, peer, synced=synced)

    def handle_block(self, block: Block, peer: Optional[Peer], *, synced: bool = False, defer: bool = True) -> bool:
        """Hand a block to the node's policy and apply what it decides. True when a block was stored."""
        actions = self.policy.on_block(block, peer, now_ms(), synced=synced, defer=defer,
                                       wall_ms=int(time.time() * 1000))
        self.apply(actions)
        return any(isinstance(a, Accepted) for a in actions)

    # -- applying the policy's actions --------------------------------------------------------
    def apply(self, actions) -> None:
        """Carry out ``actions`` in order; admitted messages go out in batches."""
        batch: list = []
        for a in actions:
            if isinstance(a, Admitted):
                batch.append(a)
                continue
            self._relay_messages(batch)
            batch = []
            self._apply_one(a)
        self._relay_messages(batch)

    def _relay_messages(self, batch: list) -> None:
        if not batch:
            return
        sources = {id(a.source) for a in batch}
        exclude = batch[0].source if len(sources) == 1 else None
        self.transport.broadcast_messages([(a.message_hash, a.payload) for a in batch], exclude=exclude)
        self._poke()

    def _apply_one(self, a) -> None:
        if isinstance(a, Accepted):
            if isinstance(a.source, Peer):
                a.source.fruitless = False  # it delivered a block new to this node
            if a.relay:
                self.transport.broadcast(Kind.BLOCK, a.block.encode(), item=a.block_hash, exclude=a.source)
        elif isinstance(a, NewHead):
            self._on_new_head(synced=a.synced)
        elif isinstance(a, Orphan):
            if a.source is not None:
                self._fetch_parent(a.source, a.parent)
        elif isinstance(a, Refused):
            self._block_refused(a)
        elif isinstance(a, Parked):
            log.info("%s holds block %d %s until its messages arrive: %s", self.name, a.height,
                     hexstr(a.block_hash)[:14], a.detail)
        elif isinstance(a, Expired):
            self.transport.refuse("unseen-message",
                                  f"block {a.height} {hexstr(a.block_hash)[:14]}: its messages were never broadcast "
                                  f"to this node within {self.net.unseen_grace_ms} ms (it will still be "
                                  f"followed if the network builds on it)")
        elif isinstance(a, MessageRefused):
            self._message_refused(a)
        elif isinstance(a, (Deferred, Held)):
            pass  # kept aside by the policy; nothing to send

    def _block_refused(self, a: Refused) -> None:
        s = self.sync
        if a.reason == "future-timestamp" and s is not None and s.peer is a.source:
            s.ahead += 1
        if a.source is None:
            log.warning("%s refused block %d: %s", self.name, a.height, a.detail)
        elif not a.penalise:
            log.info("%s refused block %d from %s: %s", self.name, a.height, a.source.label(), a.detail)
        else:
            self.transport.penalize(a.source, Penalty.INVALID_BLOCK, a.reason,
                                    f"block {a.height} {hexstr(a.block_hash)[:14]}: {a.detail}")

    def _message_refused(self, a: MessageRefused) -> None:
        if a.penalise:
            if not a.source.closed.is_set() and not a.source.close_reason:  # not once it is banned
                self.transport.penalize(a.source, Penalty.INVALID_MESSAGE, a.reason,
                                        f"message {hexstr(a.message_hash)[:14]}: {a.detail}")
        elif a.source is None:
            log.warning("%s: own message refused: %s (%s)", self.name, a.reason, a.detail)
        else:
            log.debug("%s ignored message %s: %s", self.name, hexstr(a.message_hash)[:14], a.reason)

    def _on_new_head(self, *, synced: bool) -> None:
        self.head_since = time.monotonic()
        if not synced or self.sync is None:
            head = self.node.headers[self.node.head_hash]
            log.info("%s head %d %s (miner %s)", self.name, head.height, hexstr(head.hash)[:14],
                     hexstr(head.miner)[:10])
        self._poke()
