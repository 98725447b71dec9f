"""The memory pool: holders' messages waiting for a block, grouped by the block
whose model they were computed at.

It also remembers which messages it has seen (the paper's "history messages
stored in the computing node's memory pool"), which validators consult to check
the authenticity of the messages in a block (Section V-B).
"""

from __future__ import annotations

from typing import Optional

from ..errors import InvalidMessage
from ..protocol.message import Message
from ..types import hexstr

__all__ = ["Mempool", "MAX_DEPTH"]


#: How far (in height) from the node's head a message's base block may be: a message
#: only matters while a block on its base can still compete with the head.
MAX_DEPTH = 8


class Mempool:
    """Messages grouped by base block, at most ``max_bases`` groups of ``max_per_base``.

    The pool follows its node's head (``set_head``): it admits a message only for a base
    within ``max_depth`` heights of the head, drops the groups that fall further behind
    as the head moves, and when it must drop a group to make room it drops the one
    farthest from the head (never the head's own group, and never one for a newcomer that
    is no nearer). A message dropped with its group is forgotten as seen unless a block
    carried it, so a holder or peer that sends it again is heard."""

    def __init__(self, *, max_per_base: int = 4096, max_bases: int = 16, max_seen: int = 1 << 18,
                 max_depth: int = MAX_DEPTH):
        self._by_base: dict = {}  # base -> {identity: message}
        self._group_key: dict = {}  # base -> (round, order of arrival)
        self._arrivals = 0
        # message hash -> its base while it is known only as a pool entry, None once seen
        # in a block or marked seen; insertion-ordered: the oldest are dropped first
        self._seen: dict = {}
        self.max_per_base = max_per_base
        self.max_bases = max_bases
        self.max_seen = max_seen
        self.max_depth = max_depth
        self._head: tuple = (None, None)  # the node's head (hash, height); None: no head told yet
        # the last block whose messages were all seen here, and the eviction count then:
        # until a hash is evicted they all stay seen (nodes sharing a pool ask once)
        self._all_seen: tuple = (None, 0)
        self._all_marked: tuple = (None, 0)  # the same, for the last block marked seen for good
        self._evictions = 0

    def __contains__(self, message_hash: bytes) -> bool:
        return message_hash in self._seen

    def seen(self, message_hash: bytes) -> bool:
        return message_hash in self._seen

    # -- the head ----------------------------------------------------------------------
    def set_head(self, head: bytes, height: int) -> None:
        """Follow the node's head: drop the groups more than ``max_depth`` heights away."""
        if self._head == (head, height):
            return
        self._head = (head, height)
        for base, (round_, _) in list(self._group_key.items()):
            if abs(round_ - height) > self.max_depth:
                self._evict(base)

    def check_height(self, height: int) -> None:
        """Refuse a message for a base at ``height`` when that is too far from the head."""
        head_height = self._head[1]
        if head_height is not None and abs(height - head_height) > self.max_depth:
            raise InvalidMessage("stale-base", f"message is for a block at height {height}, more than "
                                               f"{self.max_depth} from this node's head at {head_height}")

    def _rank(self, base: bytes, round_: int, arrival: int) -> tuple:
        """Smaller is kept first: the head's group, then nearness to the head, then age."""
        head, height = self._head
        if height is None:
            return (1, -round_, arrival)
        return (base != head, abs(round_ - height), arrival)

    def _farthest(self) -> Optional[bytes]:
        """The base whose group goes first (None: no group)."""
        return max(self._group_key, key=lambda b: self._rank(b, *self._group_key[b]), default=None)

    def _evict(self, base: bytes) -> None:
        group = self._by_base.pop(base, {})
        self._group_key.pop(base, None)
        seen = self._seen
        forgot = False
        for m in group.values():
            if m.hash in seen and seen[m.hash] == base:  # known only as this pool's entry
                del seen[m.hash]
                forgot = True
        if forgot:
            self._evictions += 1

    # -- messages ----------------------------------------------------------------------
    def add(self, msg: Message) -> None:
        """Admit a validated message; refuse a second message from the same
        pseudo-identity for the same base block, a base too far from the head, and overflow."""
        group = self._by_base.get(msg.base)
        if group is None:  # a new base: it takes the place of the group farthest from the head
            self.check_height(msg.round)  # a valid message's round is its base's height
            if len(self._by_base) >= self.max_bases:
                farthest = self._farthest()
                if self._rank(farthest, *self._group_key[farthest]) < self._rank(msg.base, msg.round, self._arrivals):
                    raise InvalidMessage("mempool-full", f"already {len(self._by_base)} blocks' messages held, "
                                                         f"each nearer this node's head than {hexstr(msg.base)[:14]}")
                while len(self._by_base) >= self.max_bases:  # (more than one if the bound was lowered)
                    self._evict(self._farthest())
            group = self._by_base[msg.base] = {}
            self._group_key[msg.base] = (msg.round, self._arrivals)
            self._arrivals += 1
        else:
            other = group.get(msg.identity)
            if other is not None:
                if other.hash == msg.hash:
                    return
                raise InvalidMessage(
                    "duplicate-identity",
                    f"pseudo-identity {hexstr(msg.identity)} already sent a message for block {hexstr(msg.base)[:14]}",
                )
            if len(group) >= self.max_per_base:
                raise InvalidMessage("mempool-full",
                                     f"already {len(group)} messages for block {hexstr(msg.base)[:14]}")
        group[msg.identity] = msg
        if msg.hash not in self._seen:
            self._note_seen(msg.hash, msg.base)

    def mark_seen(self, message_hash: bytes) -> None:
        if message_hash in self._seen:
            self._seen[message_hash] = None  # seen for good (in a block), not only as an entry
            return
        self._note_seen(message_hash, None)

    def _note_seen(self, message_hash: bytes, base) -> None:
        self._seen[message_hash] = base
        if len(self._seen) > self.max_seen:
            self._evictions += 1
            for old in list(self._seen)[: len(self._seen) - self.max_seen // 2]:
                del self._seen[old]

    def first_unseen(self, block):
        """The first of ``block``'s messages never seen here, or None."""
        if self._all_seen[0] is block and self._all_seen[1] == self._evictions:
            return None
        seen = self._seen
        for m in block.messages:
            if m.hash not in seen:
                return m
        self._all_seen = (block, self._evictions)
        return None

    def mark_block_seen(self, block) -> None:
        """Mark every message of ``block`` seen (``mark_seen`` of each, in order)."""
        if self._all_marked[0] is block and self._all_marked[1] == self._evictions:
            return  # all are marked already
        for m in block.messages:
            self.mark_seen(m.hash)
        if self.first_unseen(block) is None:
            self._all_marked = (block, self._evictions)
        else:  # a block larger than the pool's memory
            self._all_seen = self._all_marked = (None, 0)

    def for_base(self, base: bytes) -> list[Message]:
        return list(self._by_base.get(base, {}).values())

    def count(self, base: bytes) -> int:
        return len(self._by_base.get(base, ()))

    def copy(self) -> "Mempool":
        """An independent pool with the same contents, order, head and bounds (messages
        are immutable and shared)."""
        twin = Mempool(max_per_base=self.max_per_base, max_bases=self.max_bases, max_seen=self.max_seen,
                       max_depth=self.max_depth)
        twin._by_base = {base: dict(group) for base, group in self._by_base.items()}
        twin._group_key = dict(self._group_key)
        twin._arrivals, twin._head = self._arrivals, self._head
        twin._seen = dict(self._seen)
        twin._all_seen, twin._all_marked, twin._evictions = self._all_seen, self._all_marked, self._evictions
        return twin

    def empty(self) -> bool:
        return not self._by_base and not self._seen

    def drop_base(self, base: bytes) -> None:
        self._by_base.pop(base, None)
        self._group_key.pop(base, None)
