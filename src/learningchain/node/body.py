"""Whether a block's body is the one its header commits to.

The header hash covers the messages root, the selection hash and the model hash,
but not the body bytes themselves, so anyone can pair a real header with another
body. Such a copy says nothing about the block named by the header: a node drops
the copy (and blames whoever sent it) but must not remember the header hash as
invalid, or the real block would be refused when it arrives. Only when the body
matches every commitment is a failed validation a property of the block itself.
"""

from __future__ import annotations

from typing import Optional

from ..errors import InvalidBlock
from ..protocol.block import Block, merkle_root, model_hash, selection_hash

__all__ = ["body_mismatch"]


def body_mismatch(block: Block, dim: Optional[int] = None, *, messages: bool = True) -> Optional[InvalidBlock]:
    """The first way the body differs from its header's commitments, or None.

    Reasons are those of ``validate_block`` for the same checks. ``dim``, when
    given, is the chain's model size (a model of another shape cannot be the one
    committed to by a valid block of this chain). ``messages=False`` skips the
    messages root: for a body whose messages a pruned store dropped.
    """
    header = block.header
    h = header.height
    if h != 0 and block.params:
        return InvalidBlock("unexpected-params", "only the genesis block carries parameters", height=h)
    if messages and merkle_root([m.hash for m in block.messages]) != header.messages_root:
        return InvalidBlock("bad-messages-root", "messages do not match the header's messages root", height=h)
    if selection_hash(block.selection) != header.selection_hash:
        return InvalidBlock("bad-selection-hash", "selection does not match the header", height=h)
    if (dim is not None and block.model.shape != (dim,)) or model_hash(block.model) != header.model_hash:
        return InvalidBlock("bad-model-hash", "model does not match the header's model hash", height=h)
    return None
