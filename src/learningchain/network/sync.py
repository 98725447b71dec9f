"""The daemon's sync role: catching up from a heavier peer, and serving peers that catch up.

A node asks the peer with the most work for the blocks after the newest one their
chains share (a block locator), batch by batch, and fetches single blocks (the
parents of orphans) by hash. A pruned node asked for a block it holds only by
header answers PRUNED (the height its whole blocks start at) instead: the asking
node ends that sync without blaming the peer, and syncs from another peer (an
archival one) until its own height reaches the blocks the pruned peer holds whole.
Whether to go on after an answer, give up on the peer, or fetch missing parents is
the node policy's decision
(:meth:`~learningchain.node.policy.NodePolicy.on_sync_end`); this part keeps the
request ids and the timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

from ..node import SQLiteStore
from ..node.actions import ContinueSync, FetchBlock, SyncDone, SyncFailed
from ..node.store import decompress_body, is_pruned_body
from .peer import Peer, PeerClosed
from .tcp import Penalty
from .wire import Kind, encode_blocks_end, encode_get_block, encode_get_blocks, encode_pruned, encode_sync_block

__all__ = ["SyncRole", "SyncState", "MAX_OPEN_FETCHES", "MAX_QUEUED_REQUESTS"]

log = logging.getLogger("learningchain.net")

#: GET_BLOCK requests (single blocks, an orphan's parent) a node keeps open at one peer;
#: it asks for more only as the peer answers.
MAX_OPEN_FETCHES = 4
#: Block requests of one peer that wait their turn while an earlier one is answered. An
#: honest peer has at most one GET_BLOCKS and MAX_OPEN_FETCHES GET_BLOCKs open at a time;
#: a request beyond the queue is a flood, and penalised.
MAX_QUEUED_REQUESTS = 8
#: Seconds before a node syncs again from a peer whose sync fell short only by blocks
#: stamped ahead of the node's clock (policy.MAX_FUTURE_MS is 15 s).
SYNC_AHEAD_RETRY_S = 5.0


@dataclass
class SyncState:
    peer: Peer
    request: int
    started: float
    start_height: int
    last_activity: float
    blocks: int = 0
    cpu_started: float = 0.0
    progress_at: float = 0.0  # when a block it delivered was last stored
    request_blocks: int = 0  # blocks delivered for the current request
    request_new: int = 0  # of which were new and stored
    new_blocks: int = 0  # new blocks stored, over the whole sync
    ahead: int = 0  # blocks it delivered that this node refused as stamped ahead of its clock


class SyncRole:
    """Sync requests and answers of a :class:`~.daemon.NodeDaemon` (a part of it)."""

    def on_peer(self, peer: Peer) -> None:
        h = peer.hello
        if h.work > self.node.head_work or (h.work == self.node.head_work and h.head not in self.node.headers):
            self.start_sync(peer)
        if not self.ever_ready and len(self.transport.peers) >= self.net.min_peers:
            self.ever_ready = True
        self._poke()

    def on_peer_closed(self, peer: Peer) -> None:
        # the messages it relayed that wait for their block go (another peer's copy is still
        # taken), and with them the policy's last references to the closed peer
        self.policy.forget_source(peer)
        peer.known.clear()  # a pool of blocks may still name it as a source (bounded by their work)
        task = self.serving.pop(id(peer), None)
        if task is not None:
            task.cancel()
        for coro in self.serve_queue.pop(id(peer), ()):
            coro.close()
        if self.sync is not None and self.sync.peer is peer:
            self._end_sync(complete=False, why=f"peer left: {peer.close_reason}")

    def _next_request(self) -> int:
        self._request = (self._request + 1) & 0xFFFFFFFF
        return self._request

    def _pruned_beyond_us(self, peer: Peer) -> bool:
        """``peer`` refused a sync as pruned and holds nothing whole that we could use
        yet: the block after our head is below its bodies, or our head has not moved
        since it refused."""
        if peer.refused_at is None:
            return False
        return self.node.height + 1 < peer.holds_from or self.node.head_hash == peer.refused_at

    def start_sync(self, peer: Peer) -> bool:
        """Ask ``peer`` for the blocks after the newest one our chains share."""
        now = time.monotonic()
        if peer.sync_failed or now < peer.sync_after or self._pruned_beyond_us(peer):
            return False
        if self.sync is not None:
            if self.sync.peer is peer or now - self.sync.last_activity < self.net.sync_timeout_s:
                return False
            self._sync_failed(f"no answer for {self.net.sync_timeout_s:g} s")
        request = self._next_request()
        batch = self.net.sync_batch
        peer.requests[request] = batch
        if peer.send(Kind.GET_BLOCKS, encode_get_blocks(request, self.node.locator(), batch)):
            self.sync = SyncState(peer, request, now, self.node.height, now, cpu_started=time.process_time())
            log.info("%s syncing from %s (our height %d)", self.name, peer.label(), self.node.height)
            return True
        peer.requests.pop(request, None)
        return False

    def _continue_sync(self) -> None:
        s = self.sync
        request = self._next_request()
        s.peer.requests[request] = self.net.sync_batch
        s.request = request
        s.request_blocks = s.request_new = 0
        s.last_activity = time.monotonic()
        s.peer.send(Kind.GET_BLOCKS, encode_get_blocks(request, self.node.locator(), self.net.sync_batch))

    def _on_blocks_end(self, peer: Peer, request: int, count: int, more: bool) -> None:
        peer.fetches.discard(request)
        if peer.requests.pop(request, None) is None:
            self.transport.penalize(peer, Penalty.UNSOLICITED, "unsolicited", f"end of request {request}, "
                                                                             "which this node never sent")
            return
        s = self.sync
        current = s is not None and s.peer is peer and s.request == request
        hello = peer.hello
        actions = self.policy.on_sync_end(
            current=current, more=more, delivered=s.request_blocks if current else 0,
            new=s.request_new if current else 0, claimed=count,
            peer_work=hello.work if hello is not None else None, peer_head=hello.head if hello is not None else None)
        for a in actions:
            if isinstance(a, ContinueSync):
                self._continue_sync()
            elif isinstance(a, SyncFailed):
                if current and s.ahead:
                    # it fell short only by blocks stamped ahead of this node's clock: clocks
                    # differ, not the peer's fault; ask again once the clock has moved on
                    peer.sync_after = time.monotonic() + SYNC_AHEAD_RETRY_S
                    self._end_sync(complete=False, why=f"{s.ahead} block(s) stamped ahead of this node's clock")
                else:
                    self._sync_failed(a.why)
            elif isinstance(a, SyncDone):
                peer.synced = True
                self._end_sync(complete=True)
            elif isinstance(a, FetchBlock):
                self._fetch_block(peer, a.block_hash)

    def _on_pruned(self, peer: Peer, request: int, holds_from: int) -> None:
        """A pruned peer refused a request: it holds the blocks asked for only by header.
        Not a fault (pruning is its right), so no penalty: the sync ends, and the node
        syncs from another peer until its height reaches what this one holds whole."""
        peer.fetches.discard(request)
        if peer.requests.pop(request, None) is None:
            self.transport.penalize(peer, Penalty.UNSOLICITED, "unsolicited", f"pruned answer to request {request}, "
                                                                             "which this node never sent")
            return
        peer.holds_from = max(peer.holds_from, holds_from)
        peer.refused_at = self.node.head_hash
        s = self.sync
        if s is not None and s.peer is peer and s.request == request:
            self._end_sync(complete=False, why=f"it is pruned: it holds whole blocks from height {holds_from} on, "
                                               "the rest by header only; syncing from another peer")
        else:
            log.info("%s: %s is pruned (whole blocks from height %d on)", self.name, peer.label(), holds_from)

    def _sync_failed(self, why: str) -> None:
        """The sync peer stalled or fell short: penalise it and never sync from it again."""
        s = self.sync
        if s is None:
            return
        s.peer.sync_failed = True
        self._end_sync(complete=False, why=why)
        self.transport.penalize(s.peer, Penalty.SYNC_STALL, "sync-stall", why)

    def _end_sync(self, *, complete: bool, why: str = "") -> None:
        s = self.sync
        self.sync = None
        if s is None:
            return
        if s.new_blocks == 0:
            s.peer.fruitless = True
        seconds = time.monotonic() - s.started
        gained = self.node.height - s.start_height
        self.last_sync = {"peer": s.peer.label(), "blocks": s.blocks, "from_height": s.start_height,
                          "to_height": self.node.height, "seconds": round(seconds, 4),
                          "cpu_seconds": round(time.process_time() - s.cpu_started, 4), "complete": complete}
        log.info("%s sync from %s %s: %d blocks received, height %d -> %d in %.2f s%s", self.name, s.peer.label(),
                 "done" if complete else "stopped", s.blocks, s.start_height, self.node.height, seconds,
                 f" ({why})" if why else "")
        if gained > 0:
            self.transport.broadcast(Kind.BLOCK, self.node.head.encode(), item=self.node.head_hash)
        self._poke()

    def _best_sync_peer(self) -> Optional[Peer]:
        """The peer whose hello claims the most work beyond ours, not yet synced from."""
        best = None
        for peer in self.transport.peers.values():
            if peer.hello and not peer.synced and not peer.sync_failed and not self._pruned_beyond_us(peer) \
                    and peer.sync_after <= time.monotonic() \
                    and peer.hello.work > self.node.head_work \
                    and peer.hello.head not in self.node.headers:
                best = peer if best is None or peer.hello.work > best.hello.work else best
        return best

    def _sync_from_best(self) -> None:
        """No sync running: start one from the peer whose hello claims the most work beyond ours."""
        best = self._best_sync_peer()
        if best is not None:
            self.start_sync(best)

    def _fetch_parent(self, peer: Peer, missing: bytes) -> None:
        """An orphan arrived: sync along the sender's chain, or ask for the one parent.

        An orphan costs its sender little, so it does not pick whom the node syncs
        from: a peer that claims more work comes first, and a sender whose last sync
        brought nothing new (or failed) gets no new sync for its orphans, only the
        one parent asked for.
        """
        if self.sync is None:
            best = self._best_sync_peer()
            if best is not None:
                self.start_sync(best)
            elif not peer.fruitless and self.start_sync(peer):
                return
        self._fetch_block(peer, missing)

    def _fetch_block(self, peer: Peer, h: bytes) -> None:
        now = time.monotonic()
        if h in self.node.headers or now - self._fetching.get(h, 0.0) < 2.0:
            return
        if len(peer.fetches) >= MAX_OPEN_FETCHES:
            return  # asked again once it answers (the next orphan or sync end)
        request = self._next_request()
        peer.requests[request] = 1
        if peer.send(Kind.GET_BLOCK, encode_get_block(request, h)):
            self._fetching[h] = now
            peer.fetches.add(request)
        else:
            peer.requests.pop(request, None)

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, peer: Peer, coro) -> None:
        """Answer a peer's block requests one at a time, in order; a few wait their
        turn (a peer may pipeline them), more than MAX_QUEUED_REQUESTS is a flood."""
        key = id(peer)
        task = self.serving.get(key)
        queue = self.serve_queue.setdefault(key, deque())
        if task is not None and not task.done():
            if len(queue) >= MAX_QUEUED_REQUESTS:
                coro.close()
                self.transport.penalize(peer, Penalty.UNSOLICITED, "overlapping-request",
                                        f"a block request while {len(queue) + 1} earlier ones are still being "
                                        "answered")
                return
            queue.append(coro)
            return
        queue.append(coro)
        task = asyncio.get_running_loop().create_task(self._serve_in_turn(queue))
        self.serving[key] = task
        task.add_done_callback(lambda t, k=key: self._served(k, t))

    @staticmethod
    async def _serve_in_turn(queue: deque) -> None:
        while queue:
            try:
                await queue.popleft()
            except PeerClosed:
                return

    def _served(self, key: int, task: asyncio.Task) -> None:
        if self.serving.get(key) is task:
            del self.serving[key]
            for coro in self.serve_queue.pop(key, ()):  # the peer left, or the node stops
                coro.close()

    def _pruned_here(self, h: Optional[bytes]) -> bool:
        """Whether this node holds block ``h`` by header only (its messages pruned)."""
        store = self.node.store
        return h is not None and store.pruned_below > 0 and h in self.node.headers and not store.has_body(h)

    def _wire_block(self, h: bytes) -> Optional[bytes]:
        """The block's wire bytes, or None when this node lacks it or, pruned, its
        messages (a body without them is not the block: a pruned node serves only the
        blocks it holds whole, and peers catch up on the rest from an archival node)."""
        store = self.node.store
        if isinstance(store, SQLiteStore):
            raw = store.raw(h)
            if raw is None or is_pruned_body(raw[1]):
                return None
            header, body = raw
            return len(header).to_bytes(4, "little") + header + decompress_body(body)
        block = store.get(h)
        if block is None or not store.has_body(h):
            return None
        return block.encode()

    async def _serve_blocks(self, peer: Peer, request: int, locator: list, limit: int) -> None:
        limit = max(0, min(limit, self.net.sync_batch))
        start = self.node.fork_point(locator)
        sent = 0
        if start is None:
            await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, 0, False))
            return
        height = start + 1
        while sent < limit and height <= self.node.height:
            h = self.node.store.canonical_hash(height)
            raw = None if h is None else self._wire_block(h)
            if raw is None:
                if sent == 0 and self._pruned_here(h):  # a clear refusal, not an empty answer
                    await peer.send_wait(Kind.PRUNED, encode_pruned(request, self.node.store.pruned_below))
                    return
                break
            await peer.send_wait(Kind.SYNC_BLOCK, encode_sync_block(request, raw))
            peer.known.add(h)
            sent += 1
            height += 1
        more = height <= self.node.height
        await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, sent, more))

    async def _serve_block(self, peer: Peer, request: int, h: bytes) -> None:
        raw = self._wire_block(h) if h in self.node.headers else None
        if raw is None and self._pruned_here(h):
            await peer.send_wait(Kind.PRUNED, encode_pruned(request, self.node.store.pruned_below))
            return
        if raw is not None:
            await peer.send_wait(Kind.SYNC_BLOCK, encode_sync_block(request, raw))
            peer.known.add(h)
        await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, 1 if raw else 0, False))
