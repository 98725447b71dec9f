"""Small records of the node: a block's outcome, the shared verdict cache, a block's size."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from ..errors import InvalidBlock
from ..protocol.block import Block, encoded_size
from .body import body_mismatch

__all__ = ["BlockOutcome", "VerdictCache", "VerifiedMessages", "block_size", "MAX_VERIFIED"]


def block_size(block: Block) -> int:
    """The encoded size of ``block`` in bytes, from its parts (without encoding it)."""
    return encoded_size(block)


#: Message hashes remembered as verified, at least (a node raises it to twice what its
#: mempool can hold).
MAX_VERIFIED = 1 << 16


class VerifiedMessages:
    """Hashes of messages that passed ``validate_message``, the ``limit`` most recently
    added or looked up (the least recently used go first). Forgetting one costs only
    its signature check again when it comes back."""

    def __init__(self, limit: int = MAX_VERIFIED):
        self._hashes: "OrderedDict[bytes, None]" = OrderedDict()
        self.limit = limit

    def __contains__(self, message_hash) -> bool:
        if message_hash in self._hashes:
            self._hashes.move_to_end(message_hash)
            return True
        return False

    def __len__(self) -> int:
        return len(self._hashes)

    def __iter__(self):
        return iter(self._hashes)

    def add(self, message_hash: bytes) -> None:
        self._hashes[message_hash] = None
        self._hashes.move_to_end(message_hash)
        while len(self._hashes) > self.limit:
            self._hashes.popitem(last=False)

    def update(self, hashes) -> None:
        for h in hashes:
            self.add(h)

    def __ior__(self, hashes) -> "VerifiedMessages":
        self.update(hashes)
        return self


@dataclass
class VerdictCache:
    """Verdicts that depend only on the bytes they are about, shared by honest nodes.

    Validation of a block is a pure function of the block, its parent (named by
    the block) and the chain's parameters, so nodes that received the same block
    may share one verdict instead of recomputing it each; the same holds for the
    signature and shape checks of a message, keyed by its hash.

    Whether a block's body matches its header is a property of one copy, not of
    the hash, so it is shared only between nodes handed the very same (immutable)
    object: in a simulation every node hears one object, and the messages root
    of a block with K messages is then computed once rather than at each node.
    """

    blocks: dict = field(default_factory=dict)  # block hash -> None (valid) or InvalidBlock
    messages: VerifiedMessages = field(default_factory=VerifiedMessages)  # passed validate_message (bounded)
    hits: int = 0
    # id(block) -> (weak reference to the block, dim, verdict). The block is not held
    # (it holds K messages, and a window of 64 kept 64 rounds of messages alive); an
    # entry counts only while its reference still gives that very object, so a reused
    # id never finds another block's verdict.
    bodies: dict = field(default_factory=dict)
    max_bodies: int = 64

    def body_mismatch(self, block: Block, dim: Optional[int]) -> Optional[InvalidBlock]:
        """``body_mismatch(block, dim)``, computed once per block object."""
        entry = self.bodies.get(id(block))
        if entry is not None and entry[0]() is block and entry[1] == dim:
            return entry[2]
        verdict = body_mismatch(block, dim)
        self.bodies.pop(id(block), None)  # a dead entry under a reused id goes to the back
        self.bodies[id(block)] = (weakref.ref(block), dim, verdict)
        while len(self.bodies) > self.max_bodies:
            self.bodies.pop(next(iter(self.bodies)))
        return verdict


@dataclass(frozen=True)
class BlockOutcome:
    status: str  # "accepted", "known" or "orphan"
    block_hash: bytes
    new_head: bool = False
    reorg: bool = False
    missing: Optional[bytes] = None  # the parent to fetch, for an orphan
    connected: tuple = ()  # orphans that this block let the node accept
    unseen: tuple = ()  # orphans it would connect but for messages never seen here (blocks)
