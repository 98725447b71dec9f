"""Replaying a stored chain: ``learningchain chain verify``.

From genesis (or, for the holders' final check of paper Section V-B, over the
last s blocks only), every canonical block is decoded from the bytes on disk,
its hash recomputed, and validated against its parent by the same
``validate_block`` that nodes run: proof of work, links, signatures, messages
root, the recomputed selection and model. The first failure is reported with
its height.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError, DecodeError, InvalidBlock, LearningChainError, StoreError
from ..models.custom import check_recorded_model
from ..protocol.block import Header, decode_header
from ..protocol.budget import charge
from ..protocol.forkchoice import block_work
from ..protocol.transition import params_of_genesis, validate_block, validate_header_link
from ..types import hexstr
from .body import body_mismatch
from .store import _PRUNED, DamagedStore, SQLiteStore, decode_stored, open_readonly

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
    not_replayed: str = ""  # what a --last check left out, in words
    pruned_to: int = 0  # blocks 1..pruned_to had their message bodies pruned (checked by header only)

    def describe(self) -> str:
        if self.ok:
            span = "from genesis" if self.from_height <= 1 else f"from height {self.from_height}"
            text = (f"OK: {self.checked} blocks verified by full replay {span} to head {self.height} "
                    f"({hexstr(self.head_hash)[:18]})")
            return text + (f"; {self.not_replayed}" if self.not_replayed else "")
        if self.first_bad_height is None:
            return f"INVALID: {self.error}"
        return f"INVALID at height {self.first_bad_height}: {self.error}"


def _open(path) -> SQLiteStore:
    return open_readonly(path)


def _hash_cell(value, what: str, height: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        kind = type(value).__name__ if not isinstance(value, bytes) else f"{len(value)} bytes"
        raise InvalidBlock("corrupt", f"{what} is stored as {kind}, not a 32-byte BLOB", height=height)
    return value


def _canonical(store: SQLiteStore, height: int) -> bytes:
    row = store._db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()
    if row is None:
        raise InvalidBlock("missing-block", "the canonical index has no block here", height=height)
    return _hash_cell(row[0], "the canonical index's hash", height)


def _row(store: SQLiteStore, h: bytes, height: int) -> tuple:
    """The stored (parent, height, work, header, body) of block ``h``, with their types checked."""
    row = store._db.execute("SELECT hash, parent, height, work, header, body FROM blocks WHERE hash=?",
                            (h,)).fetchone()
    if row is None:
        other = store._db.execute("SELECT typeof(hash) FROM blocks WHERE CAST(hash AS BLOB)=?", (h,)).fetchone()
        if other is not None:
            raise InvalidBlock("corrupt", f"block {hexstr(h)[:14]} is stored with its hash as "
                               f"{other[0].upper()}, not BLOB", height=height)
        raise InvalidBlock("missing-block", f"block {hexstr(h)[:14]} is not in the store", height=height)
    _, parent, stored_height, work, header, body = row
    _hash_cell(parent, "the parent column", height)
    if not isinstance(header, bytes) or not isinstance(body, bytes):
        raise InvalidBlock("corrupt", "the header or body column is not a BLOB", height=height)
    if not isinstance(stored_height, int):
        raise InvalidBlock("corrupt", f"the height column holds {type(stored_height).__name__}", height=height)
    if not isinstance(work, str) or not work.isdigit():
        raise InvalidBlock("corrupt", f"the work column holds {work!r}, not a decimal integer", height=height)
    return parent, stored_height, int(work), header, body


def _check_columns(header: Header, parent_col: bytes, height_col: int, work_col: int, work: int) -> None:
    """The columns a node reads back (parent, height, total work) agree with the header and the chain."""
    h = header.height
    if parent_col != header.parent:
        raise InvalidBlock("bad-parent-column", f"the parent column says {hexstr(parent_col)[:14]}, "
                           f"the header {hexstr(header.parent)[:14]}", height=h)
    if height_col != header.height:
        raise InvalidBlock("bad-height-column", f"the height column says {height_col}, the header {h}", height=h)
    if work_col != work:
        raise InvalidBlock("bad-work", f"the stored total work is {work_col}, the chain's is {work}", height=h)


def _load(store: SQLiteStore, height: int, expect_parent: Optional[bytes], *,
          header_only: bool = False, pruned_ok: bool = False) -> tuple:
    """Block (or, with ``header_only``, header) at canonical ``height``, and its stored columns."""
    h = _canonical(store, height)
    parent_col, height_col, work_col, header_raw, body_raw = _row(store, h, height)
    try:
        block = decode_header(header_raw) if header_only else decode_stored(header_raw, body_raw,
                                                                              pruned_ok=pruned_ok)
    except DecodeError as exc:
        raise InvalidBlock("corrupt", str(exc), height=height) from None
    header = block if header_only else block.header
    if header.hash != h:
        raise InvalidBlock("hash-mismatch",
                           f"stored header hashes to {hexstr(header.hash)[:14]}, indexed as {hexstr(h)[:14]}",
                           height=height)
    if header.height != height:
        raise InvalidBlock("bad-height", f"header says height {header.height}", height=height)
    if expect_parent is not None and header.parent != expect_parent:
        raise InvalidBlock("bad-parent", "block does not link to the canonical block below it", height=height)
    return block, (parent_col, height_col, work_col)


def verify_chain(path, *, last: Optional[int] = None, trust_model_code: Optional[str] = None) -> VerifyReport:
    """Validate the canonical chain stored at ``path`` (a chain.sqlite or a run directory).

    The store is opened read-only. Every canonical block is replayed, or with
    ``last`` the last ``last`` of them; the blocks below such a window have their
    headers, links, proof of work and stored columns checked, not their bodies,
    and the report says so. Any inconsistency is reported at its height. A user
    model named in genesis is rebuilt and checked with ``trust_model_code``
    (models/custom.py); without it the report says it was not.
    """
    report = VerifyReport(ok=False, height=-1, checked=0)
    try:
        store = _open(path)
    except DamagedStore as exc:
        report.error = f"{exc}; no block could be checked"
        return report
    at = [0]  # the height being checked, for errors the store itself raises
    try:
        _verify(store, report, last, at, trust_model_code)
    except InvalidBlock as exc:
        report.ok = False
        report.first_bad_height = exc.height if exc.height is not None else at[0]
        report.error = str(exc)
    except (sqlite3.DatabaseError, DecodeError) as exc:
        report.ok = False
        report.first_bad_height = at[0]
        report.error = f"corrupt: the store cannot be read here ({exc})"
    finally:
        store.close()
    return report


def _verify(store: SQLiteStore, report: VerifyReport, last: Optional[int], at: list,
            trust_model_code: Optional[str] = None) -> None:
    top = _check_head(store, report, at)
    headers: dict[bytes, Header] = {}

    def ancestor(h: bytes) -> Header:
        if h not in headers:
            raise InvalidBlock("missing-block", f"ancestor {hexstr(h)[:14]} is not on the checked chain")
        return headers[h]

    at[0] = 0
    genesis, params = _check_genesis(store, report)
    try:
        model_note = check_recorded_model(params.model, params.dim, trust_code=trust_model_code)
    except ConfigError as exc:
        raise InvalidBlock("model-code", f"the model genesis records cannot be rebuilt: {exc}", height=0) from None
    headers[genesis.hash] = genesis.header
    work = {genesis.hash: 0}
    start = 1 if last is None else max(1, top - last + 1)
    report.pruned_to = _pruned_to(store)
    _check_pruning(params, report.pruned_to, top)
    start = max(start, report.pruned_to + 1)
    report.from_height = start
    spent = _check_below_window(store, params, genesis, start, headers, work, ancestor, at)
    parent = _window_parent(store, report, params, genesis, start, at)
    _replay_window(store, report, params, genesis, parent, range(start, top + 1), headers, work, spent,
                   ancestor, at)
    _check_side_blocks(store, params, genesis.hash, work, at)
    report.not_replayed = "; ".join(n for n in (report.not_replayed, model_note) if n)
    report.ok = True


def _pruned_to(store: SQLiteStore) -> int:
    """The highest canonical block whose message bodies were pruned (0: none)."""
    row = store._db.execute("SELECT MAX(c.height) FROM canonical c JOIN blocks b ON b.hash = c.hash "
                            "WHERE substr(b.body, 1, 1) = ?", (bytes([_PRUNED]),)).fetchone()
    return int(row[0]) if row is not None and isinstance(row[0], int) else 0


def _check_pruning(params, pruned_to: int, top: int) -> None:
    """Bodies may be pruned only below the genesis's finality depth, and never on a
    chain whose budget rule needs every message."""
    if not pruned_to:
        return
    depth = params.finality_depth
    if depth is None:
        raise InvalidBlock("pruned", f"the message bodies of blocks up to {pruned_to} were pruned, but this "
                           "chain's genesis fixes no finality depth", height=pruned_to)
    if pruned_to >= top - depth:
        raise InvalidBlock("pruned", f"the message bodies of block {pruned_to} were pruned {top - pruned_to} "
                           f"blocks below the head; the chain's finality depth is {depth}", height=pruned_to)
    if params.budget is not None:
        raise InvalidBlock("pruned", "the chain has a per-member budget, which needs every message, but the "
                           f"message bodies of blocks 1 to {pruned_to} were pruned", height=pruned_to)


def _body_check(block, params, pruned: bool):
    """The body against its header's commitments; a pruned body (no messages) against
    every commitment but the messages root, which only the dropped messages could match."""
    if pruned and not block.messages:
        return body_mismatch(block, params.dim, messages=False)
    return body_mismatch(block, params.dim)


def _check_head(store: SQLiteStore, report: VerifyReport, at: list) -> int:
    """The recorded head is the top of the canonical chain; returns its height."""
    n = store.canonical_length()
    top = n - 1
    at[0] = top
    row = store._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
    if n == 0 or row is None:
        raise StoreError(f"{store.path} holds no chain (an empty chain store)")
    report.height = top
    head = _hash_cell(row[0], "the recorded head", top)
    if _canonical(store, top) != head:
        raise InvalidBlock("head-mismatch", "the recorded head is not the top of the canonical chain", height=top)
    report.head_hash = head
    return top


def _check_genesis(store: SQLiteStore, report: VerifyReport):
    """(genesis block, its parameters), the stored genesis checked."""
    genesis, (g_parent, g_height, g_work) = _load(store, 0, None)
    try:
        params = params_of_genesis(genesis)
    except LearningChainError as exc:
        raise InvalidBlock(getattr(exc, "reason", "bad-genesis"), str(exc), height=0) from None
    if g_height != 0 or g_work != 0:
        raise InvalidBlock("bad-genesis", "the genesis block's stored height or work is not 0", height=0)
    report.genesis_hash = genesis.hash
    return genesis, params


def _check_below_window(store: SQLiteStore, params, genesis, start: int, headers: dict, work: dict, ancestor,
                        at: list) -> Optional[dict]:
    """Below the window: headers, links, proof of work, the stored columns, and each
    body against its header's commitments (hashes only: nothing is recomputed).
    The budget rule needs every member's spend below the window: it is counted here
    and returned (None without a budget)."""
    spent = {} if params.budget is not None else None
    parent_header = genesis.header
    pruned_to = _pruned_to(store)
    for height in range(1, start):
        pruned = height <= pruned_to
        at[0] = height
        below, cols = _load(store, height, parent_header.hash, pruned_ok=True)
        header = below.header
        validate_header_link(header, parent_header, params, genesis_hash=genesis.hash, ancestor=ancestor)
        bad = _body_check(below, params, pruned)
        if bad is not None:
            raise InvalidBlock(bad.reason, bad.detail, height=height)
        work[header.hash] = work[parent_header.hash] + block_work(header, params)
        _check_columns(header, *cols, work[header.hash])
        if spent is not None:
            spent = charge(spent, below.messages, params)
        headers[header.hash] = header
        parent_header = header
    return spent


def _window_parent(store: SQLiteStore, report: VerifyReport, params, genesis, start: int, at: list):
    """The block the replayed window starts from (genesis without a window)."""
    if start == 1:
        return genesis
    # The window starts from this block's model: it must be the one its header commits to.
    at[0] = start - 1
    parent, _ = _load(store, start - 1, None, pruned_ok=True)
    bad = _body_check(parent, params, start - 1 <= report.pruned_to)
    if bad is not None:
        raise bad
    notes = []
    if report.pruned_to:
        notes.append(f"blocks 1 to {report.pruned_to} were checked by header only (their message bodies were "
                     f"pruned): headers, links, proof of work, stored work, selections and models against their "
                     f"headers' commitments; their updates were not recomputed")
    if start - 1 > report.pruned_to:
        low = report.pruned_to + 1
        notes.append(f"blocks {low} to {start - 1} were not replayed: their headers, links, proof of work, "
                     f"stored work and bodies against their headers' commitments were checked; their "
                     f"updates were not recomputed")
    report.not_replayed = "; ".join(notes)
    return parent


def _replay_window(store: SQLiteStore, report: VerifyReport, params, genesis, parent, heights: range,
                   headers: dict, work: dict, spent: Optional[dict], ancestor, at: list) -> None:
    """Every block of the window validated by recomputation, its stored columns checked."""
    verified: set = set()
    for height in heights:
        at[0] = height
        block, cols = _load(store, height, parent.hash)
        validate_block(block, parent, params, genesis_hash=genesis.hash, ancestor=ancestor, verified=verified,
                       spent=spent)
        if spent is not None:
            spent = charge(spent, block.messages, params)
        work[block.hash] = work[parent.hash] + block_work(block.header, params)
        _check_columns(block.header, *cols, work[block.hash])
        for i in block.selection:
            ident = hexstr(block.messages[i].identity)
            report.selected[ident] = report.selected.get(ident, 0) + 1
        headers[block.hash] = block.header
        parent = block
        report.checked += 1


def _check_side_blocks(store: SQLiteStore, params, genesis_hash: bytes, work: dict, at: list) -> None:
    """Blocks off the canonical chain: hash, parent and height columns and total work
    (a node reloading the store trusts them; their bodies are not replayed)."""
    rows = store._db.execute("SELECT hash, parent, height, work, header FROM blocks ORDER BY height")
    for h, parent_col, height_col, work_col, header_raw in rows:
        if isinstance(h, bytes) and h in work and h != genesis_hash:
            continue
        height = height_col if isinstance(height_col, int) else -1
        at[0] = height
        if h == genesis_hash:
            continue
        if not isinstance(header_raw, bytes):
            raise InvalidBlock("corrupt", "a header column is not a BLOB", height=height)
        try:
            header = decode_header(header_raw)
        except DecodeError as exc:
            raise InvalidBlock("corrupt", f"side block: {exc}", height=height) from None
        if not isinstance(h, bytes) or header.hash != h:
            raise InvalidBlock("hash-mismatch", f"side block {hexstr(header.hash)[:14]} is stored under "
                               "another hash or a hash that is not a BLOB", height=header.height)
        if header.parent not in work:
            raise InvalidBlock("missing-block", f"side block {hexstr(h)[:14]} has no stored parent",
                               height=header.height)
        if not isinstance(work_col, str) or not work_col.isdigit() or not isinstance(parent_col, bytes):
            raise InvalidBlock("corrupt", "a column of a side block has the wrong type", height=header.height)
        work[h] = work[header.parent] + block_work(header, params)
        _check_columns(header, parent_col, height_col, int(work_col), work[h])


def chain_head(path) -> tuple[int, bytes]:
    store = _open(path)
    try:
        head = store.head_hash()
        n = store.canonical_length()
        if head is None or n == 0:
            raise StoreError("the store holds no chain")
        return n - 1, head
    except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
        raise StoreError(f"{store.path}: the store cannot be read ({exc})") from None
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
        if block is None and h in node.headers and node.headers[h].height > 0:
            # known by header only (an in-memory store that dropped deeper models): the
            # check cannot cover the blocks asked for, so it does not pass
            return False, node.headers[h].height, "beyond-kept-depth"
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
                           verified=verified, spent=node.spend_at(parent.hash) if node.params.budget is not None
                           else None)
        except InvalidBlock as exc:
            return False, block.height, exc.reason
    return True, None, ""
