"""The memory pool: holders' messages waiting for a block, grouped by the block
whose model they were computed at.

It also remembers which messages it has seen (the paper's "history messages
stored in the computing node's memory pool"), which validators consult to check
the authenticity of the messages in a block (Section V-B).
"""

from __future__ import annotations

from collections import OrderedDict

from ..errors import InvalidMessage
from ..protocol.message import Message
from ..types import hexstr

__all__ = ["Mempool"]


class Mempool:
    def __init__(self, *, max_per_base: int = 4096, max_bases: int = 16, max_seen: int = 1 << 18):
        self._by_base: "OrderedDict[bytes, dict[bytes, Message]]" = OrderedDict()
        self._seen: dict = {}  # insertion-ordered: the oldest are dropped first
        self.max_per_base = max_per_base
        self.max_bases = max_bases
        self.max_seen = max_seen
        # the last block whose messages were all seen here, and the eviction count then:
        # until a hash is evicted they all stay seen (nodes sharing a pool ask once)
        self._all_seen: tuple = (None, 0)
        self._evictions = 0

    def __contains__(self, message_hash: bytes) -> bool:
        return message_hash in self._seen

    def seen(self, message_hash: bytes) -> bool:
        return message_hash in self._seen

    def add(self, msg: Message) -> None:
        """Admit a validated message; refuse a second message from the same
        pseudo-identity for the same base block, and overflow."""
        group = self._by_base.get(msg.base)
        if group is None:
            group = self._by_base[msg.base] = {}
            while len(self._by_base) > self.max_bases:
                self._by_base.popitem(last=False)
        other = group.get(msg.identity)
        if other is not None:
            if other.hash == msg.hash:
                return
            raise InvalidMessage(
                "duplicate-identity",
                f"pseudo-identity {hexstr(msg.identity)} already sent a message for block {hexstr(msg.base)[:14]}",
            )
        if len(group) >= self.max_per_base:
            raise InvalidMessage("mempool-full", f"already {len(group)} messages for block {hexstr(msg.base)[:14]}")
        group[msg.identity] = msg
        self.mark_seen(msg.hash)

    def mark_seen(self, message_hash: bytes) -> None:
        if message_hash in self._seen:
            return
        self._seen[message_hash] = None
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
        if self._all_seen[0] is block and self._all_seen[1] == self._evictions:
            return  # all are here already
        for m in block.messages:
            self.mark_seen(m.hash)
        if self.first_unseen(block) is not None:  # a block larger than the pool's memory
            self._all_seen = (None, 0)

    def for_base(self, base: bytes) -> list[Message]:
        return list(self._by_base.get(base, {}).values())

    def count(self, base: bytes) -> int:
        return len(self._by_base.get(base, ()))

    def copy(self) -> "Mempool":
        """An independent pool with the same contents, order and bounds (messages are
        immutable and shared)."""
        twin = Mempool(max_per_base=self.max_per_base, max_bases=self.max_bases, max_seen=self.max_seen)
        twin._by_base = OrderedDict((base, dict(group)) for base, group in self._by_base.items())
        twin._seen = dict(self._seen)
        twin._all_seen, twin._evictions = self._all_seen, self._evictions
        return twin

    def empty(self) -> bool:
        return not self._by_base and not self._seen

    def drop_base(self, base: bytes) -> None:
        self._by_base.pop(base, None)
