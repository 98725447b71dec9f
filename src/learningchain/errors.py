"""One exception tree for the whole package.

Every error a user or a peer can provoke is a :class:`LearningChainError`; the
specific classes carry the offending values in their message so that a log line
says what was wrong without a traceback.
"""

from __future__ import annotations

__all__ = [
    "LearningChainError",
    "ConfigError",
    "DecodeError",
    "InvalidMessage",
    "InvalidBlock",
    "UnknownParent",
    "StoreError",
    "DataError",
]


class LearningChainError(Exception):
    """Root of every error raised on purpose by learningchain."""


class ConfigError(LearningChainError):
    """A run or protocol parameter is missing, unknown or out of range."""


class DecodeError(LearningChainError):
    """Bytes that do not decode to a well-formed record (wrong length, type, size)."""


class InvalidMessage(LearningChainError):
    """A holder's message breaks a protocol rule (signature, round, shape, norm...).

    ``reason`` is a short machine-readable tag (e.g. ``"bad-signature"``) used
    for counting; the message text says what was wrong in words.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidBlock(LearningChainError):
    """A block breaks a consensus rule. ``reason`` is a short tag for counting."""

    def __init__(self, reason: str, detail: str, *, height: int | None = None):
        where = f" at height {height}" if height is not None else ""
        super().__init__(f"{reason}{where}: {detail}")
        self.reason = reason
        self.detail = detail
        self.height = height


class UnknownParent(LearningChainError):
    """A block whose parent the node has not seen yet (an orphan, not a fault)."""

    def __init__(self, parent_hash: bytes):
        super().__init__(f"unknown parent block 0x{parent_hash.hex()}")
        self.parent_hash = parent_hash


class StoreError(LearningChainError):
    """The block store on disk is missing, unreadable or inconsistent."""


class DataError(LearningChainError):
    """A data set is missing, malformed or of the wrong shape."""
