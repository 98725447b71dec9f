"""The computing node (sans-I/O) and where it keeps its chain."""

from .mempool import Mempool
from .node import BlockOutcome, Node, VerdictCache
from .store import BlockStore, MemoryStore, SQLiteStore, open_store

__all__ = ["BlockOutcome", "BlockStore", "Mempool", "MemoryStore", "Node", "SQLiteStore", "VerdictCache",
           "open_store"]
