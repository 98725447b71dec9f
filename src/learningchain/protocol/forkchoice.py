"""Fork choice: the heaviest valid chain, with an explicit tie-break.

Only blocks that passed validation are ever weighed (an invalid block, and so
every descendant of it, never enters a node's store), so the head is simply the
known block with the most total work. Equal work goes to the lower block hash:
every node that holds the same blocks picks the same head, whatever order they
arrived in. (First-seen, Bitcoin's rule, would leave nodes split until the next
block; a miner could grind for a low hash to win ties, which costs it the same
work as mining the block again.)
"""

from __future__ import annotations

__all__ = ["is_heavier", "choose_head"]


def is_heavier(work_a: int, hash_a: bytes, work_b: int, hash_b: bytes) -> bool:
    """True when chain tip (work_a, hash_a) beats (work_b, hash_b)."""
    return work_a > work_b or (work_a == work_b and hash_a < hash_b)


def choose_head(tips) -> bytes:
    """The winning hash among ``(total_work, hash)`` pairs."""
    best = None
    for work, h in tips:
        if best is None or is_heavier(work, h, best[0], best[1]):
            best = (work, h)
    if best is None:
        raise ValueError("no tips to choose from")
    return best[1]
