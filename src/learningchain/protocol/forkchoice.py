"""Fork choice: the heaviest valid chain, with an explicit tie-break.

Only blocks that passed validation are ever weighed (an invalid block, and so
every descendant of it, never enters a node's store), so the head is simply the
known block with the most total work. Equal work goes to the lower block hash:
every node that holds the same blocks picks the same head, whatever order they
arrived in. (First-seen, Bitcoin's rule, would leave nodes split until the next
block; a miner could grind for a low hash to win ties, which costs it the same
work as mining the block again.)

Every weight and every comparison of chain tips in the code base goes through
this module: :func:`block_work` (one block), :func:`chain_work` (a chain from
its parent's total), :func:`is_heavier` and :func:`head_key` (the order with its
tie-break) and :func:`choose_head`.
"""

from __future__ import annotations

from typing import Iterable

from .block import Header

__all__ = ["block_work", "chain_work", "is_heavier", "head_key", "choose_head"]


def block_work(header: Header, params) -> int:
    """Weight of one block in the heaviest-chain rule.

    Proof of work: ``2**difficulty``, the expected number of hashes behind the
    seal. Proof of authority: the header's ``difficulty``, 2 in turn and 1 out of
    turn (as in Ethereum's clique). The genesis block weighs nothing.
    """
    if header.height == 0:
        return 0
    if params.consensus == "pow":
        return 1 << header.difficulty
    return header.difficulty


def chain_work(parent_work: int, headers: Iterable[Header], params) -> int:
    """Total work of a chain: its base's total plus the weight of each header on it."""
    return parent_work + sum(block_work(h, params) for h in headers)


def is_heavier(work_a: int, hash_a: bytes, work_b: int, hash_b: bytes) -> bool:
    """True when chain tip (work_a, hash_a) beats (work_b, hash_b): more work, or
    equal work and a lower hash."""
    return work_a > work_b or (work_a == work_b and hash_a < hash_b)


def head_key(work: int, block_hash: bytes) -> tuple:
    """A sort key that orders tips as :func:`is_heavier` does: the maximum wins.

    ``max(tips, key=lambda t: head_key(work_of(t), hash_of(t)))`` is the head.
    """
    return (work, bytes(255 - b for b in block_hash))


def choose_head(tips) -> bytes:
    """The winning hash among ``(total_work, hash)`` pairs."""
    best = None
    for work, h in tips:
        if best is None or is_heavier(work, h, best[0], best[1]):
            best = (work, h)
    if best is None:
        raise ValueError("no tips to choose from")
    return best[1]
