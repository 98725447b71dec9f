"""Consensus-critical code: pure, deterministic, the spec of the chain.

Everything a validator runs lives here: message and block encodings, the
aggregation rules, the state transition and the fork choice. Nothing in this
package does I/O or keeps state beyond its arguments.
"""

from .aggregation import Aggregate, Batch, aggregate, compute_l_nearest, get_rule, RULES
from .block import Block, Header, decode_block, decode_header, merkle_root, model_hash, selection_hash
from .message import Message, decode_message, sign_message, validate_message
from .params import ProtocolParams
from .transition import apply_update, build_block, make_genesis, params_of_genesis, validate_block

__all__ = [
    "Aggregate",
    "Batch",
    "Block",
    "Header",
    "Message",
    "ProtocolParams",
    "RULES",
    "aggregate",
    "apply_update",
    "build_block",
    "compute_l_nearest",
    "decode_block",
    "decode_header",
    "decode_message",
    "get_rule",
    "make_genesis",
    "merkle_root",
    "model_hash",
    "params_of_genesis",
    "selection_hash",
    "sign_message",
    "validate_block",
    "validate_message",
]
