"""Small records of the node: a block's outcome, the shared verdict cache, a block's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..protocol.block import Block, encoded_size

__all__ = ["BlockOutcome", "VerdictCache", "block_size"]


def block_size(block: Block) -> int:
    """The encoded size of ``block`` in bytes, from its parts (without encoding it)."""
    return encoded_size(block)


@dataclass
class VerdictCache:
    """Verdicts that depend only on the bytes they are about, shared by honest nodes.

    Validation of a block is a pure function of the block, its parent (named by
    the block) and the chain's parameters, so nodes that received the same block
    may share one verdict instead of recomputing it each; the same holds for the
    signature and shape checks of a message, keyed by its hash.
    """

    blocks: dict = field(default_factory=dict)  # block hash -> None (valid) or InvalidBlock
    messages: set = field(default_factory=set)  # hashes of messages that passed validate_message
    hits: int = 0


@dataclass(frozen=True)
class BlockOutcome:
    status: str  # "accepted", "known" or "orphan"
    block_hash: bytes
    new_head: bool = False
    reorg: bool = False
    missing: Optional[bytes] = None  # the parent to fetch, for an orphan
    connected: tuple = ()  # orphans that this block let the node accept
    unseen: tuple = ()  # orphans it would connect but for messages never seen here (blocks)
