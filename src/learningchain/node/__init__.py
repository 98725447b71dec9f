"""The computing node (sans-I/O) and where it keeps its chain."""

from .mempool import Mempool
from .node import BlockOutcome, Node, VerdictCache, prune_refusal
from .policy import NETWORK_RULES, NodePolicy, PolicyRules
from .store import BlockStore, MemoryStore, SQLiteStore, open_store

__all__ = ["BlockOutcome", "BlockStore", "Mempool", "MemoryStore", "NETWORK_RULES", "Node", "NodePolicy",
           "PolicyRules", "SQLiteStore", "VerdictCache", "open_store", "prune_refusal"]
