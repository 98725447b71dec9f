"""What a node decided about a gossiped block, a message or a sync answer.

:class:`~.policy.NodePolicy` returns these small frozen records; a driver applies
them (the TCP daemon relays, fetches and scores peers; the in-process simulation
counts refusals). ``source`` is the opaque key of whoever sent the item (a peer
object, a node id or an address; ``None`` for this node's own work): the policy
only compares it, and bounds each source's share of its pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..protocol.block import Block

__all__ = ["Accepted", "NewHead", "Deferred", "Parked", "Expired", "Orphan", "Refused", "Admitted", "Held",
           "MessageRefused", "ContinueSync", "SyncFailed", "SyncDone", "FetchBlock", "decisions"]


@dataclass(frozen=True)
class Accepted:
    """A block validated and stored; ``relay`` says whether to gossip it on (to all but ``source``)."""

    block_hash: bytes
    block: Optional[Block]
    source: Any
    relay: bool


@dataclass(frozen=True)
class NewHead:
    head: bytes
    synced: bool


@dataclass(frozen=True)
class Deferred:
    """Lost the fork choice: kept aside unvalidated until its branch becomes the heavier."""

    block_hash: bytes
    source: Any


@dataclass(frozen=True)
class Parked:
    """Holds messages this node never saw: waits for them until ``deadline_ms``."""

    block_hash: bytes
    height: int
    source: Any
    deadline_ms: int
    detail: str


@dataclass(frozen=True)
class Expired:
    """A parked block whose messages did not come in time: dropped, but not refused for good."""

    block_hash: bytes
    height: int
    source: Any


@dataclass(frozen=True)
class Orphan:
    """Its parent is unknown: ask ``source`` for ``parent`` (nothing to ask when ``source`` is None)."""

    block_hash: bytes
    parent: bytes
    source: Any


@dataclass(frozen=True)
class Refused:
    """A block refused. ``final``: the block its header names is invalid (remembered as
    such); otherwise only this copy, or this node's policy, refused it. ``penalise``:
    the refusal is the sender's fault."""

    block_hash: bytes
    height: int
    source: Any
    reason: str
    detail: str
    final: bool
    penalise: bool


@dataclass(frozen=True)
class Admitted:
    """A message admitted to the mempool: gossip it on (``payload`` is the driver's, passed through)."""

    message_hash: bytes
    source: Any
    payload: Any = None


@dataclass(frozen=True)
class Held:
    """A message for a block this node does not know yet: kept until that block comes."""

    message_hash: bytes
    base: bytes
    source: Any


@dataclass(frozen=True)
class MessageRefused:
    message_hash: bytes
    source: Any
    reason: str
    detail: str
    penalise: bool


@dataclass(frozen=True)
class ContinueSync:
    """The sync answer delivered new blocks and says more follow: ask for the next batch."""


@dataclass(frozen=True)
class SyncDone:
    """The sync peer has nothing more: this node has caught up with it."""


@dataclass(frozen=True)
class SyncFailed:
    """The sync peer stalled or fell short of its claim: penalise it, never sync from it again."""

    why: str


@dataclass(frozen=True)
class FetchBlock:
    """Ask the source of a sync answer for one block (the missing parent of a kept orphan)."""

    block_hash: bytes


def decisions(actions) -> list:
    """The actions without their sources and payloads: what two drivers compare."""
    out = []
    for a in actions:
        fields = {k: v for k, v in vars(a).items() if k not in ("source", "payload", "block", "deadline_ms")}
        out.append((type(a).__name__, tuple(sorted(fields.items()))))
    return out
