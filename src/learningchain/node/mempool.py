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
            for old in list(self._seen)[: len(self._seen) - self.max_seen // 2]:
                del self._seen[old]

    def for_base(self, base: bytes) -> list[Message]:
        return list(self._by_base.get(base, {}).values())

    def count(self, base: bytes) -> int:
        return len(self._by_base.get(base, ()))

    def drop_base(self, base: bytes) -> None:
        self._by_base.pop(base, None)
