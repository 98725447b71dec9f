"""What a node does with what it hears: the gossip policy, sans I/O.

A :class:`NodePolicy` sits on a :class:`~.node.Node` and decides, for a gossiped
block, a holder's message or a sync answer, what happens next, returning the
decision as actions (:mod:`.actions`). It keeps the pools of items waiting for
something: blocks that lose the fork choice (deferred), blocks with messages this
node never saw (parked, under ``unseen = "wait"``), messages that overtook their
block (held), and the per-source share of those pools and of the node's orphans.
It reads no clock and touches no socket: the driver passes the time in
milliseconds and an opaque key of the item's source, and applies the actions.
The in-process simulation and the TCP daemon drive this same object, so every
decision can be tested in-process.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import InvalidBlock, InvalidMessage
from ..protocol.block import Block
from ..protocol.consensus import block_work
from ..protocol.forkchoice import is_heavier
from ..protocol.message import validate_message
from ..protocol.transition import validate_header_link
from .actions import (Accepted, Admitted, ContinueSync, Deferred, Expired, FetchBlock, Held, MessageRefused,
                      NewHead, Orphan, Parked, Refused, SyncDone, SyncFailed)
from .body import body_mismatch
from .records import block_size

__all__ = ["NodePolicy", "PolicyRules", "NETWORK_RULES", "MAX_DEFERRED", "MAX_DEFERRED_BYTES", "MAX_ORPHAN_BYTES",
           "PEER_POOL_SHARE", "MAX_PARKED", "MAX_PARKED_BYTES", "MAX_HELD_MESSAGES", "MAX_HELD_BYTES", "BENIGN_BLOCK",
           "BENIGN_MESSAGE"]

#: Bounds of the blocks a node keeps aside unvalidated: orphans (in the Node) and
#: losing blocks (deferred), each by count and by encoded bytes.
MAX_DEFERRED = 256
MAX_DEFERRED_BYTES = 32 << 20
MAX_ORPHAN_BYTES = 32 << 20
#: Of each pool, the share one source's blocks may take (its oldest go first beyond it).
PEER_POOL_SHARE = 4  # a quarter
MAX_PARKED = 64
MAX_PARKED_BYTES = 32 << 20  # blocks held for their messages (unseen = "wait")
#: Messages held for a block that has not arrived, by count and by encoded bytes; they
#: must pass every check that needs no block first (signature, membership, shape, norm).
MAX_HELD_MESSAGES = 8192
MAX_HELD_BYTES = 64 << 20
#: How far ahead of a network node's clock a block's timestamp may be (Bitcoin allows two
#: hours on ten-minute blocks; blocks here come every few seconds).
MAX_FUTURE_MS = 15_000
#: Refusals of a holder's message that an honest relay can cause (races, stale rounds).
BENIGN_MESSAGE = frozenset({"unknown-base", "wrong-round", "duplicate-identity", "mempool-full", "stale-base"})
#: Refusals of a block that are not the sender's fault.
BENIGN_BLOCK = frozenset({"unseen-message", "too-few-messages", "beyond-kept-depth"})
#: Hashes remembered as seen (blocks and messages), and how many go at once beyond it.
MAX_SEEN, SEEN_EVICT = 200_000, 20_000


@dataclass(frozen=True)
class PolicyRules:
    """Which of the waiting pools a node keeps, and their bounds.

    The defaults are the plain node of the in-process simulation: every block is
    validated at once and every refusal is final for that call. A network node puts
    off losing blocks, holds early messages and bounds each source's share
    (:data:`NETWORK_RULES`), and under ``unseen = "wait"`` parks blocks for their messages.
    """

    defer_losing: bool = False
    park_unseen: bool = False
    unseen_grace_ms: int = 2000
    hold_messages: int = 0
    max_held_bytes: int = MAX_HELD_BYTES
    source_share: int = 0  # 0: no per-source bound
    max_deferred: int = MAX_DEFERRED
    max_deferred_bytes: int = MAX_DEFERRED_BYTES
    max_parked: int = MAX_PARKED
    max_parked_bytes: int = MAX_PARKED_BYTES
    max_future_ms: int = 0  # 0: timestamps are not compared with a clock


NETWORK_RULES = PolicyRules(defer_losing=True, hold_messages=MAX_HELD_MESSAGES, source_share=PEER_POOL_SHARE,
                            max_future_ms=MAX_FUTURE_MS)


class NodePolicy:
    """The gossip policy of one node (see the module docstring)."""

    def __init__(self, node, rules: PolicyRules = PolicyRules()):
        self.node = node
        self.rules = rules
        self.seen: "OrderedDict[bytes, None]" = OrderedDict()
        self.deferred: "OrderedDict[bytes, tuple]" = OrderedDict()  # hash -> (block, source), unvalidated
        self.deferred_bytes = 0
        self._deferred_size: dict[bytes, int] = {}
        self.parked: "OrderedDict[bytes, tuple]" = OrderedDict()  # hash -> (block, source, deadline_ms)
        self.pending: "OrderedDict[bytes, list]" = OrderedDict()  # base hash -> [(message, payload, source)]
        self.held_bytes = 0
        self._held: "OrderedDict[bytes, tuple]" = OrderedDict()  # message hash -> (base, size, source)
        self._held_by_source: dict = {}  # source -> OrderedDict(message hash -> size), oldest first
        self._held_source_bytes: dict = {}  # source -> bytes it holds
        self._origin: dict[bytes, Any] = {}  # deferred or orphan block -> its source

    # -- what was seen -------------------------------------------------------------------
    def mark_seen(self, h: bytes) -> None:
        self.seen[h] = None
        if len(self.seen) > MAX_SEEN:
            for _ in range(SEEN_EVICT):
                self.seen.popitem(last=False)

    def first_sight(self, h: bytes) -> bool:
        """True the first time ``h`` (a message hash) comes; it is then remembered."""
        if h in self.seen:
            return False
        self.mark_seen(h)
        return True

    def knows_block(self, h: bytes) -> bool:
        """Whether a block with header hash ``h`` needs no further look: stored, kept
        aside, or refused for good. A copy refused for its body leaves ``h`` open."""
        node = self.node
        return h in self.seen or h in node.headers or h in node.orphans or h in self.deferred

    # -- blocks ------------------------------------------------------------------------
    def on_block(self, block: Block, source: Any, now_ms: int, *, synced: bool = False,
                 defer: bool = True, wall_ms: Optional[int] = None) -> list:
        """Decide what to do with a block from ``source`` (None: this node's own).

        ``synced``: fetched as history by a sync or a block request (never put off,
        never parked, not relayed again). ``wall_ms``: the node's clock (Unix
        milliseconds), against which a block's timestamp may be at most
        ``rules.max_future_ms`` ahead.
        """
        out: list = []
        if not self._from_the_future(block, source, wall_ms, out):
            self._handle(block, source, now_ms, synced, defer, out)
        return out

    def _from_the_future(self, block: Block, source, wall_ms: Optional[int], out: list) -> bool:
        """Refuse a peer's block stamped more than ``max_future_ms`` after this node's clock.

        The chain only asks that a timestamp not precede its parent's, so without this
        bound one block stamped far ahead would pin every descendant's timestamp to it,
        and under retargeting each later window would measure no time and raise the
        difficulty a bit, for ever. Like Bitcoin's, the bound is the node's, not the
        chain's: the refusal is not final (the block is taken once the clock reaches it)
        and not the sender's fault (clocks differ)."""
        limit = self.rules.max_future_ms
        if not limit or wall_ms is None or source is None:
            return False
        ahead = block.header.timestamp - wall_ms
        if ahead <= limit:
            return False
        out.append(Refused(block.hash, block.height, source, "future-timestamp",
                           f"timestamp {block.header.timestamp} is {ahead} ms ahead of this node's clock "
                           f"(at most {limit} ms)", False, False))
        return True

    def _handle(self, block: Block, source, now: int, synced: bool, defer: bool, out: list) -> bool:
        if defer and not synced and source is not None and self._defer(block, source):
            out.append(Deferred(block.hash, source))
            return False
        self._undefer(block.hash)
        node = self.node
        old_head = node.head_hash
        start = len(out)
        check = (not synced and source is not None) if self.rules.park_unseen else None
        try:
            outcome = node.on_block(block, check_unseen=check)
        except InvalidBlock as exc:
            self._refused(block, source, now, exc, out)
            return False
        if outcome.status == "orphan":
            return self._orphan(block, source, now, outcome.missing, out)
        self.mark_seen(block.hash)
        if self.rules.park_unseen:
            for orphan in outcome.unseen:  # connected but for its messages: wait for them
                self._park(orphan, self._origin.pop(orphan.hash, source), now,
                           "its messages could not be admitted before its parent came", out)
        accepted = [block.hash] if outcome.status == "accepted" else []
        accepted += list(outcome.connected)
        for h in accepted:
            self.parked.pop(h, None)
            b = block if h == block.hash else node.block(h)
            out.append(Accepted(h, b, source, relay=(not synced or h != block.hash) and b is not None))
            self._release_pending(h, now, out)
        if node.head_hash != old_head and NewHead(node.head_hash, synced) not in out[start:]:
            out.append(NewHead(node.head_hash, synced))
        return bool(accepted)

    def _refused(self, block: Block, source, now: int, exc: InvalidBlock, out: list) -> None:
        if exc.reason == "unseen-message" and self.rules.park_unseen:
            self._park(block, source, now, exc.detail, out)
            return
        final = block.hash in self.node.rejected
        if final:
            # the block itself is invalid. A refusal of one copy (a body that does not
            # match its header) or by local policy leaves the hash open.
            self.mark_seen(block.hash)
        out.append(Refused(block.hash, block.height, source, exc.reason, exc.detail, final,
                           penalise=source is not None and exc.reason not in BENIGN_BLOCK))

    def _park(self, block: Block, source, now: int, detail: str, out: list) -> None:
        deadline = now + self.rules.unseen_grace_ms
        self.parked[block.hash] = (block, source, deadline)
        while len(self.parked) > self.rules.max_parked or (len(self.parked) > 1 and sum(
                block_size(b) for b, _, _ in self.parked.values()) > self.rules.max_parked_bytes):
            self.parked.popitem(last=False)
        out.append(Parked(block.hash, block.height, source, deadline, detail))

    def _orphan(self, block: Block, source, now: int, missing: bytes, out: list) -> bool:
        # not marked seen: an orphan the node later evicts may be sent again
        put_off = self._undefer(missing)
        if put_off is not None:  # its branch now matters: validate the parent, which connects it
            parent, origin = put_off
            self._handle(parent, origin, now, False, False, out)
            return block.hash in self.node.headers
        node = self.node
        if source is not None and block.hash in node.orphans:
            self._bound_share(source, block.hash, node.orphans, node.orphan_sizes, node.max_orphan_bytes,
                              node.drop_orphan)
        out.append(Orphan(block.hash, missing, source))
        return False

    def _defer(self, block: Block, source) -> bool:
        """Put off validating a gossiped block that cannot become the head.

        When blocks race, most of them lose the fork choice on arrival (less work,
        or equal work and a higher hash). Like Bitcoin nodes, which neither
        validate nor relay blocks off their best chain, a node keeps such a block
        aside unvalidated, and validates it only if a descendant makes its branch
        the heavier one (the descendant arrives as an orphan naming it).
        """
        if not self.rules.defer_losing:
            return False
        node = self.node
        parent = node.headers.get(block.parent)
        if parent is None or block.header.genesis != node.genesis_hash:
            return False
        if body_mismatch(block, node.params.dim) is not None:
            return False  # not the block its header names: the node refuses this copy now
        work = node.work[block.parent] + block_work(block.header, node.params)
        if is_heavier(work, block.hash, node.head_work, node.head_hash):
            return False
        try:  # only a header with its proof of work done and its links right takes room here
            validate_header_link(block.header, parent, node.params, genesis_hash=node.genesis_hash,
                                 ancestor=node.header)
        except InvalidBlock:
            return False  # the node refuses it now, for good
        size = block_size(block)
        limit = self.rules.max_deferred_bytes
        self.deferred[block.hash] = (block, source)
        self._deferred_size[block.hash] = size
        self.deferred_bytes += size
        self._bound_share(source, block.hash, self.deferred, self._deferred_size, limit, self._undefer)
        while len(self.deferred) > self.rules.max_deferred or (len(self.deferred) > 1
                                                               and self.deferred_bytes > limit):
            self._undefer(next(iter(self.deferred)))
        if self.deferred_bytes > limit:  # one block larger than the whole pool
            self._undefer(block.hash)
            return False
        return True

    def _undefer(self, h: bytes) -> Optional[tuple]:
        entry = self.deferred.pop(h, None)
        if entry is not None:
            self.deferred_bytes -= self._deferred_size.pop(h)
            self._origin.pop(h, None)
        return entry

    def _bound_share(self, source, h: bytes, pool, sizes: dict, limit: int, drop) -> None:
        """Keep one source's blocks in ``pool`` under 1/source_share of ``limit`` bytes,
        dropping its oldest, so that one source cannot push everyone else's out."""
        share = self.rules.source_share
        if source is None or not share:
            return
        self._origin[h] = source
        mine = [k for k in pool if k in self._origin and self._origin[k] == source]  # oldest first
        total = sum(sizes.get(k, 0) for k in mine)
        while len(mine) > 1 and total > limit // share:
            k = mine.pop(0)
            total -= sizes.get(k, 0)
            drop(k)
            self._origin.pop(k, None)

    # -- parked blocks -------------------------------------------------------------------
    def retry_parked(self, now_ms: int) -> list:
        """Blocks whose messages have all arrived now, validated."""
        out: list = []
        self._retry_parked(now_ms, out)
        return out

    def _retry_parked(self, now: int, out: list) -> None:
        if not self.parked:
            return
        for h, (block, source, _deadline) in list(self.parked.items()):
            if all(self.node.mempool.seen(m.hash) for m in block.messages):
                self.parked.pop(h, None)
                self._handle(block, source, now, False, True, out)

    def expire(self, now_ms: int) -> list:
        """Parked blocks whose grace has run out: dropped (still followable as history)."""
        out = []
        for h, (block, source, deadline) in list(self.parked.items()):
            if deadline <= now_ms:
                self.parked.pop(h, None)
                out.append(Expired(h, block.height, source))
        return out

    # -- messages ------------------------------------------------------------------------
    def on_messages(self, items, source: Any, now_ms: int) -> list:
        """Admit ``(message, payload)`` pairs from ``source`` (None: this node's holders);
        a block parked for them is then tried again."""
        out: list = []
        for msg, payload in items:
            self._admit(msg, payload, source, out)
        if any(isinstance(a, Admitted) for a in out):
            self._retry_parked(now_ms, out)
        return out

    def _admit(self, msg, payload, source, out: list) -> None:
        try:
            self.node.on_message(msg)
        except InvalidMessage as exc:
            if exc.reason == "unknown-base" and self.rules.hold_messages:
                try:  # only a message that could be valid at some block takes room
                    validate_message(msg, self.node.params)
                except InvalidMessage as bad:
                    out.append(MessageRefused(msg.hash, source, bad.reason, bad.detail,
                                              penalise=source is not None and bad.reason not in BENIGN_MESSAGE))
                    return
                self._hold(msg, payload, source)
                out.append(Held(msg.hash, msg.base, source))
            else:
                out.append(MessageRefused(msg.hash, source, exc.reason, exc.detail,
                                          penalise=source is not None and exc.reason not in BENIGN_MESSAGE))
            return
        out.append(Admitted(msg.hash, source, payload))

    def _hold(self, msg, payload, source) -> None:
        """A message can overtake the block it was computed at; keep it until that block comes.

        The pool is bounded by count and bytes. One source's messages take at most
        1/source_share of either (its own oldest go first beyond it), and when the
        pool is full the source holding the most bytes gives up its oldest, so one
        peer's messages cannot push out the others'.
        """
        h = msg.hash
        if h in self._held:
            return
        size = len(payload) if payload is not None else len(msg.encode())
        self.pending.setdefault(msg.base, []).append((msg, payload, source))
        self.pending.move_to_end(msg.base)
        self._held[h] = (msg.base, size, source)
        mine = self._held_by_source.setdefault(source, OrderedDict())
        mine[h] = size
        self._held_source_bytes[source] = self._held_source_bytes.get(source, 0) + size
        self.held_bytes += size
        rules = self.rules
        share = rules.source_share
        if source is not None and share:
            while len(mine) > 1 and (len(mine) > rules.hold_messages // share
                                     or self._held_source_bytes[source] > rules.max_held_bytes // share):
                self._drop_held(next(iter(mine)))
        while self._held and (self.pending_count > rules.hold_messages or self.held_bytes > rules.max_held_bytes):
            most = max(self._held_source_bytes, key=self._held_source_bytes.__getitem__)
            self._drop_held(next(iter(self._held_by_source[most])))

    @property
    def pending_count(self) -> int:
        """How many messages are held for a block that has not arrived."""
        return len(self._held)

    def forget_source(self, source) -> None:
        """``source`` is gone (a closed connection): drop the messages it relayed that wait
        for their block, unjudged, so that another peer's copy is still taken and the pool
        keeps no reference to it."""
        for h in list(self._held_by_source.get(source, ())):
            self._drop_held(h)

    def _forget_held(self, h: bytes) -> Optional[bytes]:
        """Drop ``h``'s bookkeeping (not its entry under its base); returns its base."""
        entry = self._held.pop(h, None)
        if entry is None:
            return None
        base, size, source = entry
        self.held_bytes -= size
        mine = self._held_by_source[source]
        del mine[h]
        self._held_source_bytes[source] -= size
        if not mine:
            del self._held_by_source[source]
            del self._held_source_bytes[source]
        return base

    def _drop_held(self, h: bytes) -> None:
        base = self._forget_held(h)
        if base is None:
            return
        waiting = self.pending.get(base)
        if waiting is not None:
            for i, (msg, _payload, _source) in enumerate(waiting):
                if msg.hash == h:
                    del waiting[i]
                    break
            if not waiting:
                del self.pending[base]
        self.seen.pop(h, None)  # dropped unjudged: another peer's copy may still be taken

    def _release_pending(self, base: bytes, now: int, out: list) -> None:
        waiting = self.pending.pop(base, None)
        if not waiting:
            return
        for msg, _payload, _source in waiting:
            self._forget_held(msg.hash)
        released: list = []
        for msg, payload, source in waiting:
            self._admit(msg, payload, source, released)
        out.extend(released)
        if any(isinstance(a, Admitted) for a in released):
            self._retry_parked(now, out)

    # -- sync answers ----------------------------------------------------------------------
    def missing_parents(self) -> list:
        return [o.parent for o in self.node.orphans.values() if o.parent not in self.node.headers]

    def on_sync_end(self, *, current: bool, more: bool, delivered: int, new: int, claimed: int,
                    peer_work: Optional[int], peer_head: Optional[bytes]) -> list:
        """The end of a sync answer (``current``: of the sync in progress, from its peer).

        Continue only on what was delivered, never on what the answer claims: a
        peer that answers "more" without new blocks would loop the node for ever.
        """
        node = self.node
        out: list = []
        if current:
            if more and new > 0:
                return [ContinueSync()]
            if more:
                out.append(SyncFailed(f"it said more blocks follow but delivered {delivered} "
                                      f"({new} new; it claimed {claimed})"))
            elif peer_work is not None and peer_work > node.head_work and peer_head not in node.headers:
                out.append(SyncFailed(f"it ended at our height {node.height} without the chain of work "
                                      f"{peer_work} that its hello claimed"))
            else:
                out.append(SyncDone())
        out.extend(FetchBlock(h) for h in self.missing_parents()[:4])
        return out

    # -- upkeep ------------------------------------------------------------------------
    def tidy(self) -> None:
        """Forget the sources of blocks no longer in any pool; bound the verdict cache."""
        node = self.node
        if len(self._origin) > len(self.deferred) + len(node.orphans):
            for h in [h for h in self._origin if h not in self.deferred and h not in node.orphans]:
                del self._origin[h]
        if node.verdicts is not None:
            cache = node.verdicts.blocks
            while len(cache) > 4096:
                cache.pop(next(iter(cache)))
