"""Replaying a stored chain: ``learningchain chain verify``.

From genesis (or, for the holders' final check of paper Section V-B, over the
last s blocks only), every canonical block is decoded from the bytes on disk,
its hash recomputed, and validated against its parent by the same
``validate_block`` that nodes run: proof of work, links, signatures, messages
root, the recomputed selection and model. The first failure is reported with
its height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import DecodeError, InvalidBlock, LearningChainError, StoreError
from ..protocol.block import Block, Header
from ..protocol.transition import params_of_genesis, validate_block
from ..types import hexstr
from .store import SQLiteStore, decode_stored

__all__ = ["verify_chain", "VerifyReport", "chain_head"]


@dataclass
class VerifyReport:
    ok: bool
    height: int  # head height
    checked: int  # blocks validated
    first_bad_height: Optional[int] = None
    error: str = ""
    head_hash: bytes = b""
    genesis_hash: bytes = b""
    from_height: int = 0
    selected: dict = field(default_factory=dict)  # pseudo-identity -> times selected (audit)

    def describe(self) -> str:
        if self.ok:
            span = "from genesis" if self.from_height <= 1 else f"from height {self.from_height}"
            return (f"OK: {self.checked} blocks verified {span} to head {self.height} "
                    f"({hexstr(self.head_hash)[:18]})")
        return f"INVALID at height {self.first_bad_height}: {self.error}"


def _open(path) -> SQLiteStore:
    path = Path(path)
    if path.is_dir():
        path = path / "chain.sqlite"
    if not path.exists():
        raise StoreError(f"no chain at {path}")
    return SQLiteStore(path, create=False)


def _load(store: SQLiteStore, height: int, expect_parent: Optional[bytes]) -> Block:
    h = store.canonical_hash(height)
    if h is None:
        raise InvalidBlock("missing-block", "the canonical index has no block here", height=height)
    raw = store.raw(h)
    if raw is None:
        raise InvalidBlock("missing-block", f"block {hexstr(h)[:14]} is not in the store", height=height)
    try:
        block = decode_stored(*raw)
    except DecodeError as exc:
        raise InvalidBlock("corrupt", str(exc), height=height) from None
    if block.hash != h:
        raise InvalidBlock("hash-mismatch",
                           f"stored header hashes to {hexstr(block.hash)[:14]}, indexed as {hexstr(h)[:14]}",
                           height=height)
    if block.height != height:
        raise InvalidBlock("bad-height", f"header says height {block.height}", height=height)
    if expect_parent is not None and block.parent != expect_parent:
        raise InvalidBlock("bad-parent", "block does not link to the canonical block below it", height=height)
    return block


def verify_chain(path, *, last: Optional[int] = None) -> VerifyReport:
    """Validate the canonical chain stored at ``path`` (a chain.sqlite or a run directory)."""
    store = _open(path)
    report = VerifyReport(ok=False, height=-1, checked=0)
    try:
        head = store.head_hash()
        n = store.canonical_length()
        if n == 0 or head is None:
            raise StoreError("the store holds no chain")
        top = n - 1
        report.height = top
        if store.canonical_hash(top) != head:
            report.first_bad_height = top
            report.error = "head-mismatch: the recorded head is not the top of the canonical chain"
            return report
        report.head_hash = head
        headers: dict[bytes, Header] = {}

        def ancestor(h: bytes) -> Header:
            if h not in headers:
                raw = store.raw(h)
                if raw is None:
                    raise InvalidBlock("missing-block", f"ancestor {hexstr(h)[:14]} is not stored")
                headers[h] = decode_stored(*raw).header
            return headers[h]

        genesis = _load(store, 0, None)
        try:
            params = params_of_genesis(genesis)
        except (InvalidBlock, LearningChainError) as exc:
            report.first_bad_height, report.error = 0, str(exc)
            return report
        report.genesis_hash = genesis.hash
        headers[genesis.hash] = genesis.header
        start = 1 if last is None else max(1, top - last + 1)
        report.from_height = start
        parent = genesis if start == 1 else _load(store, start - 1, None)
        headers[parent.hash] = parent.header
        verified: set = set()
        for height in range(start, top + 1):
            try:
                block = _load(store, height, parent.hash)
                validate_block(block, parent, params, genesis_hash=genesis.hash, ancestor=ancestor,
                               verified=verified)
            except InvalidBlock as exc:
                report.first_bad_height = height
                report.error = str(exc)
                return report
            for i in block.selection:
                ident = hexstr(block.messages[i].identity)
                report.selected[ident] = report.selected.get(ident, 0) + 1
            headers[block.hash] = block.header
            parent = block
            report.checked += 1
        report.ok = True
        return report
    finally:
        store.close()


def chain_head(path) -> tuple[int, bytes]:
    store = _open(path)
    try:
        head = store.head_hash()
        n = store.canonical_length()
        if head is None or n == 0:
            raise StoreError("the store holds no chain")
        return n - 1, head
    finally:
        store.close()


def replay_last(node, head_hash: bytes, last: int) -> tuple[bool, Optional[int], str]:
    """The holders' final check on a node's blocks: replay the last ``last`` blocks
    ending at ``head_hash`` (each against its parent, by recomputation).

    Returns (ok, first bad height, reason). Works on any node's store, including a
    light client's that holds blocks it never validated.
    """
    chain = []
    h = head_hash
    while len(chain) < last:
        block = node.store.get(h)
        if block is None or block.height == 0:
            break
        chain.append(block)
        h = block.parent
    verified: set = set()
    for block in reversed(chain):
        parent = node.store.get(block.parent)
        if parent is None:
            return False, block.height, "parent missing"
        try:
            validate_block(block, parent, node.params, genesis_hash=node.genesis_hash, ancestor=node.header,
                           verified=verified)
        except InvalidBlock as exc:
            return False, block.height, exc.reason
    return True, None, ""
