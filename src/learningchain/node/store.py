"""Block stores: where a node keeps the blocks it accepted.

Only blocks that passed validation are written, each together with its total
work, and the head moves in the same transaction, so the chain on disk is always
a valid chain whatever happens to the process. ``SQLiteStore`` is the durable
one (WAL journal, one transaction per block); ``MemoryStore`` serves simulations,
where many nodes may hold references to the same immutable block objects.
"""

from __future__ import annotations

import functools
import os
import queue
import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import zstandard

from ..errors import DecodeError, StoreError
from ..protocol.block import Block, Header, decode_body, decode_header
from ..protocol.codec import Reader
from ..protocol.params import MAX_DIM

__all__ = ["BlockStore", "MemoryStore", "SQLiteStore", "open_store", "open_readonly", "encode_stored_body",
           "decode_stored", "compress_body", "decompress_body", "is_pruned_body", "prune_stored_body"]


# A stored body is one format byte and the compressed canonical body bytes. The
# body is mostly int32 fixed-point vectors whose high bytes are nearly constant,
# so grouping the bytes by position within 4-byte words before compressing (the
# "shuffle" filter of blosc/HDF5) helps, and zstd is about ten times faster than
# zlib at the same ratio on this data.
_ZSTD_SHUFFLE = 2
#: the same, of a pruned body: the canonical body with an empty message list (the
#: selection, the model and the parameters as they were; the header still commits
#: to the dropped messages through its messages root)
_PRUNED = 3
_MAX_BODY = 1 << 32


def _shuffle4(raw: bytes) -> bytes:
    pad = (-len(raw)) % 4
    a = np.frombuffer(raw + b"\x00" * pad, dtype=np.uint8)
    return a.reshape(-1, 4).T.tobytes()


def _unshuffle4(raw: bytes, size: int) -> bytes:
    a = np.frombuffer(raw, dtype=np.uint8)
    if a.size % 4:
        raise DecodeError("stored body has a length that is not a multiple of 4")
    return a.reshape(4, -1).T.tobytes()[:size]


def compress_body(body: bytes, *, fmt: int = _ZSTD_SHUFFLE) -> bytes:
    packed = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(_shuffle4(body))
    return bytes([fmt]) + len(body).to_bytes(8, "little") + packed


def encode_stored_body(block: Block) -> bytes:
    return compress_body(block.body_bytes())


def is_pruned_body(body_raw: bytes) -> bool:
    """Whether a stored body is a pruned one (its messages dropped)."""
    return len(body_raw) > 0 and body_raw[0] == _PRUNED


def _strip_messages(body: bytes, height: int) -> bytes:
    """The canonical body bytes with the message list emptied (the rest kept byte for byte)."""
    view = memoryview(body)
    if len(view) < 4:
        raise DecodeError(f"stored body of block at height {height} is truncated")
    n = int.from_bytes(view[:4], "little")
    pos = 4
    for _ in range(n):
        if pos + 4 > len(view):
            raise DecodeError(f"stored body of block at height {height} is truncated")
        pos += 4 + int.from_bytes(view[pos:pos + 4], "little")
        if pos > len(view):
            raise DecodeError(f"stored body of block at height {height} is truncated")
    return bytes(4) + bytes(view[pos:])


def prune_stored_body(body_raw: bytes, height: int = -1) -> bytes:
    """A stored body with its messages dropped (unchanged when it is pruned already)."""
    if is_pruned_body(body_raw):
        return body_raw
    return compress_body(_strip_messages(decompress_body(body_raw, height), height), fmt=_PRUNED)


def decompress_body(body_raw: bytes, height: int = -1, *, pruned_ok: bool = False) -> bytes:
    """The canonical body bytes of a stored body. A pruned body (no messages) is
    refused unless ``pruned_ok``: it is not the body the block's header commits to."""
    if len(body_raw) >= 1 and body_raw[0] == _PRUNED and not pruned_ok:
        raise DecodeError(f"the message bodies of block at height {height} were pruned from this store")
    if len(body_raw) < 9 or body_raw[0] not in (_ZSTD_SHUFFLE, _PRUNED):
        raise DecodeError(f"stored body of block at height {height} has an unknown format")
    size = int.from_bytes(body_raw[1:9], "little")
    if size > _MAX_BODY:
        raise DecodeError(f"stored body of block at height {height} claims {size} bytes")
    try:
        shuffled = zstandard.ZstdDecompressor().decompress(body_raw[9:], max_output_size=size + 3)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"stored body of block at height {height} is corrupt ({exc})") from None
    if len(shuffled) != size + (-size) % 4:
        raise DecodeError(f"stored body of block at height {height} has the wrong length")
    return _unshuffle4(shuffled, size)


def decode_stored(header_raw: bytes, body_raw: bytes, *, max_dim: int = MAX_DIM,
                  max_messages: int = 1 << 16, pruned_ok: bool = False) -> Block:
    """Decode a stored block; DecodeError if any stored byte is malformed. A pruned
    body decodes (with ``pruned_ok``) to a block without messages."""
    header = decode_header(header_raw)
    body = decompress_body(body_raw, header.height, pruned_ok=pruned_ok)
    r = Reader(body, "block body")
    block = decode_body(r, header, max_dim=max_dim, max_messages=max_messages)
    r.finish()
    return block


class BlockStore(ABC):
    """Blocks by hash, their total work, the head, and the canonical index."""

    @abstractmethod
    def add(self, block: Block, work: int, *, head: Optional[bytes] = None) -> None:
        """Store a valid block; move the head to ``head`` in the same step when given."""

    def flush(self) -> None:
        """Wait until every block added is on disk (a store that writes behind)."""

    def after_writes(self, fn) -> None:
        """Run ``fn`` once every block added so far is on disk: now, unless the store
        writes behind, then on its writer after those blocks."""
        fn()

    @abstractmethod
    def get(self, block_hash: bytes) -> Optional[Block]: ...

    @abstractmethod
    def set_head(self, block_hash: bytes) -> None: ...

    @abstractmethod
    def head_hash(self) -> Optional[bytes]: ...

    @abstractmethod
    def canonical_hash(self, height: int) -> Optional[bytes]: ...

    @abstractmethod
    def entries(self) -> Iterator[tuple[Header, int]]:
        """Every stored (header, total work), parents before children."""

    def close(self) -> None:  # pragma: no cover - trivial
        pass

    #: blocks below this height have had their message bodies dropped (0: none)
    pruned_below: int = 0
    #: blocks below this height, but the genesis, are held by header only, models
    #: dropped too (0: none; only an in-memory store with a kept depth drops them)
    models_below: int = 0

    def enable_pruning(self, depth: int) -> None:
        """Drop, from now on, the message bodies of blocks more than ``depth`` blocks
        below the head (the chain's finality depth); headers and models stay."""
        raise StoreError(f"{type(self).__name__} cannot prune")

    def has_body(self, block_hash: bytes) -> bool:
        """Whether the store holds the block's messages (not pruned)."""
        block = self.get(block_hash)
        return block is not None and (block.height == 0 or bool(block.messages))

    def canonical_blocks(self, start: int = 0) -> Iterator[Block]:
        """The canonical blocks from ``start``, messages included; StoreError at a block
        whose messages were pruned (whoever reads them needs every message)."""
        height = start
        while True:
            h = self.canonical_hash(height)
            if h is None:
                return
            if 0 < height < self.pruned_below:
                raise StoreError(f"the messages of block {height} were pruned from this store (a pruned node "
                                 f"keeps the bodies of blocks {self.pruned_below} and later); read an archival "
                                 "node's store")
            if 0 < height < self.models_below:
                raise StoreError(f"block {height} is held by header only (this in-memory store keeps the blocks "
                                 f"{self.models_below} and later whole); read an archival node's store")
            block = self.get(h)
            if block is None:
                raise StoreError(f"canonical block at height {height} is missing from the store")
            yield block
            height += 1


class MemoryStore(BlockStore):
    """Blocks in memory. ``prune_bodies`` drops the messages of old blocks and
    ``prune_models`` whole old blocks but their headers: a block whose model was
    dropped is known (``entries``, the canonical index, the fork choice's links)
    but not held (``get`` returns None, ``has_model`` is False), so nothing built
    on it can be validated here any more. The genesis is always held."""

    def __init__(self) -> None:
        self._blocks: dict[bytes, Block] = {}  # the blocks held whole (model, and messages unless pruned)
        self._headers: dict[bytes, Header] = {}  # every block stored, held or not
        self._work: dict[bytes, int] = {}
        self._canonical: list[bytes] = []
        self._head: Optional[bytes] = None
        self.prune_depth: Optional[int] = None
        self.pruned_below = 0
        #: blocks below this height (but the genesis) are known by header only
        self.models_below = 0

    def enable_pruning(self, depth: int) -> None:
        self.prune_depth = int(depth)
        if self._head is not None:
            self._prune_for_head()

    def _prune_for_head(self) -> None:
        limit = self._headers[self._head].height - self.prune_depth
        if limit > self.pruned_below:
            self.prune_bodies(limit)
            self.pruned_below = limit

    def add(self, block: Block, work: int, *, head: Optional[bytes] = None) -> None:
        self._headers[block.hash] = block.header
        if block.height == 0 or block.height >= self.models_below:
            self._blocks[block.hash] = block
        self._work[block.hash] = work
        if head is not None:
            self.set_head(head)
            if self.prune_depth is not None:
                self._prune_for_head()

    def get(self, block_hash: bytes) -> Optional[Block]:
        return self._blocks.get(block_hash)

    def has_model(self, block_hash: bytes) -> bool:
        """Whether the store holds the block whole (its model was not dropped)."""
        return block_hash in self._blocks

    def set_head(self, block_hash: bytes) -> None:
        header = self._headers[block_hash]
        height = header.height
        del self._canonical[height + 1:]
        while len(self._canonical) <= height:
            self._canonical.append(b"")
        h = block_hash
        while True:
            b = self._headers[h]
            if self._canonical[b.height] == h:
                break
            self._canonical[b.height] = h
            if b.height == 0:
                break
            h = b.parent
        self._head = block_hash

    def head_hash(self) -> Optional[bytes]:
        return self._head

    def canonical_hash(self, height: int) -> Optional[bytes]:
        if 0 <= height < len(self._canonical):
            return self._canonical[height]
        return None

    def entries(self) -> Iterator[tuple[Header, int]]:
        for header in sorted(self._headers.values(), key=lambda header: header.height):
            yield header, self._work[header.hash]

    def prune_bodies(self, below_height: int) -> None:
        """Drop messages of blocks below ``below_height`` (headers and models stay,
        which is all validation of later blocks needs)."""
        for h, b in list(self._blocks.items()):
            if b.height < below_height and b.messages:
                self._blocks[h] = Block(b.header, (), b.selection, b.model, b.params)

    def prune_models(self, below_height: int) -> None:
        """Drop the blocks below ``below_height``, model and all, but the genesis; their
        headers and work stay. A block on such a parent can no longer be validated by
        recomputation here: a node refuses it as beyond its kept depth."""
        if below_height <= self.models_below:
            return
        for h, b in list(self._blocks.items()):
            if 0 < b.height < below_height:
                del self._blocks[h]
        self.models_below = below_height


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    hash BLOB PRIMARY KEY,
    parent BLOB NOT NULL,
    height INTEGER NOT NULL,
    work TEXT NOT NULL,
    header BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_height ON blocks(height);
CREATE TABLE IF NOT EXISTS canonical (height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
"""


#: The tables and columns of a chain store, as _SCHEMA creates them.
_TABLES = {
    "meta": ("key", "value"),
    "blocks": ("hash", "parent", "height", "work", "header", "body"),
    "canonical": ("height", "hash"),
}
_SQLITE_MAGIC = b"SQLite format 3\x00"


class DamagedStore(StoreError):
    """An SQLite file that cannot be read (damaged or truncated): for ``chain verify``
    an invalid chain, not a usage error."""


def _not_a_store(path: Path, why: str) -> StoreError:
    return StoreError(f"{path} is not a LearningChain chain store: {why}")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only after checking, without writing, that it is a chain store."""
    if not path.exists():
        raise _not_a_store(path, "no such file (no chain here)")
    if not path.is_file():
        raise _not_a_store(path, "not a regular file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise _not_a_store(path, f"cannot read it ({exc.strerror or exc})") from None
    if not magic:
        raise _not_a_store(path, "the file is empty")
    if magic != _SQLITE_MAGIC:
        raise _not_a_store(path, "not an SQLite database")
    db = None
    try:
        # A chain store is in WAL mode, and a read-only connection to it creates the
        # -wal and -shm files when they are not there. They are there exactly while a
        # writer (a running node) has the store open, or after a crash: then read
        # through them; otherwise nobody writes the file and it is read as immutable,
        # which creates nothing.
        wal = path.with_name(path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None,
                             check_same_thread=False)
        # TEXT where a BLOB belongs must come back as a str (which readers refuse),
        # not as an error from decoding it.
        db.text_factory = lambda raw: raw.decode("utf-8", "replace")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables & set(_TABLES):
            raise _not_a_store(path, "an SQLite database without the chain's tables"
                               + (f" (it holds {', '.join(sorted(tables))})" if tables else " (it is empty)"))
        for table, columns in _TABLES.items():
            if table not in tables:
                raise _not_a_store(path, f"the table {table!r} is missing")
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if missing:
                raise _not_a_store(path, f"the table {table!r} lacks the column(s) {', '.join(missing)}")
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        if "malformed" in str(exc):  # a database whose pages are damaged or missing (truncated)
            raise DamagedStore(f"{path} is a damaged or truncated SQLite database ({exc})") from None
        raise _not_a_store(path, f"unreadable ({exc})") from None
    except StoreError:
        db.close()
        raise
    return db


def _flushed(method):
    """A method that reads or changes the database: blocks still queued by a store
    that writes behind are written first."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self.flush()
        return method(self, *args, **kwargs)

    return wrapper


class SQLiteStore(BlockStore):
    """Blocks in one SQLite file: header bytes as they hash, body compressed (zstd).

    ``readonly=True`` (inspection: ``chain verify``, ``chain head``, ``chain
    balances``) opens the file with SQLite's ``mode=ro`` after checking that it is
    a chain store, and never creates or changes anything.

    ``write_behind=True`` takes a block's compression and its SQLite transaction off
    the caller's path: ``add`` hands the block to one writer thread (zstd and SQLite
    release the GIL, so on a second core this overlaps the next round's work) and
    returns. The blocks are written in the order added, each with its head move in
    one transaction as without it, so the file always holds a valid prefix of what
    was added; every other method that touches the database waits for the queue
    first, blocks still queued are served from memory, at most ``queue_blocks`` wait
    beside the one being written (``add`` then waits: one is enough for the overlap,
    and each holds its messages), and a write that fails is raised, as StoreError, by the
    next ``add``, ``flush`` or read. ``after_writes`` runs a function on the writer
    once the blocks added before it are on disk (a run's checkpoint, which must
    never name a block the file lacks).
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, cache_blocks: int = 4,
                 readonly: bool = False, write_behind: bool = False, queue_blocks: int = 1):
        path = Path(path)
        if readonly:
            self._db = _connect_readonly(path)
        else:
            if not create and not path.exists():
                raise StoreError(f"no chain at {path}")
            if path.exists():
                # an existing file is opened for writing only when it is a chain store
                # (a 0-byte file, garbage or another program's database is refused,
                # never turned into a fresh chain); only a new file gets the schema
                _connect_readonly(path).close()
            try:
                self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{path} is not a usable chain database ({exc})") from None
        self.readonly = readonly
        self.path = path
        # a few recent blocks decoded (the head and its parent are what nodes read);
        # every one holds its messages, so the cache is kept small
        self._cache: dict[bytes, Block] = {}
        self._cache_size = cache_blocks
        self._max_dim = MAX_DIM
        self.prune_depth: Optional[int] = None
        # called with each canonical block just before its messages are pruned (whoever
        # counts something from messages, e.g. the rewards, counts it there)
        self.on_prune = None
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='pruned_below'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: the store cannot be read ({exc})") from None
        self.pruned_below = _meta_int(row, "pruned_below", path)
        self._lock = threading.Lock()  # the decoded-block cache, shared with the writer
        self._pending: dict[bytes, Block] = {}
        self._failure: Optional[BaseException] = None
        self._queue: Optional[queue.Queue] = None
        if write_behind and not readonly:
            self._queue = queue.Queue(maxsize=max(1, int(queue_blocks)))
            self._writer = threading.Thread(target=self._write_loop, name=f"store-writer {path.name}", daemon=True)
            self._writer.start()

    # -- writing behind ----------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._failure is None:
                    if callable(item):
                        item()
                    else:
                        self._write(*item)
            except BaseException as exc:  # kept for the caller: the next add, flush or read raises it
                self._failure = exc
            finally:
                if item is not None and not callable(item):
                    with self._lock:
                        self._pending.pop(item[0].hash, None)
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise StoreError(f"{self.path}: writing a block failed ({self._failure}); the store holds the blocks "
                             "added before it") from self._failure

    def flush(self) -> None:
        if self._queue is not None and threading.current_thread() is not self._writer:
            self._queue.join()
            self._raise_failure()

    def after_writes(self, fn) -> None:
        if self._queue is None:
            return super().after_writes(fn)
        self._raise_failure()
        self._queue.put(fn)

    def set_limits(self, *, max_dim: int) -> None:
        self._max_dim = max_dim

    def _remember(self, block: Block) -> None:
        with self._lock:
            self._cache[block.hash] = block
            if len(self._cache) > self._cache_size:
                self._cache.pop(next(iter(self._cache)))

    def _forget(self, hashes) -> None:
        with self._lock:
            for h in hashes:
                self._cache.pop(h, None)

    def add(self, block: Block, work: int, *, head: Optional[bytes] = None) -> None:
        if self._queue is None:
            self._write(block, work, head)
            return
        self._raise_failure()
        with self._lock:
            self._pending[block.hash] = block
        self._queue.put((block, work, head))

    def _write(self, block: Block, work: int, head: Optional[bytes]) -> None:
        body = encode_stored_body(block)
        if self.prune_depth is not None and 0 < block.height < self.pruned_below:
            body = prune_stored_body(body, block.height)  # a side block below the final line
        pruned: list = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO blocks(hash, parent, height, work, header, body) VALUES (?,?,?,?,?,?)",
                (block.hash, block.parent, block.height, str(work), block.header.encode(), body),
            )
            if head is not None:
                self._move_head(head)
                if self.prune_depth is not None:
                    pruned = self._prune_for(head)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._forget(pruned)
        if block.height == 0 or block.height >= self.pruned_below:
            self._remember(block)

    @_flushed
    def enable_pruning(self, depth: int) -> None:
        """Prune from now on (and at once, down to ``depth`` below the head): one
        transaction drops the message bodies of every block deeper than ``depth``."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        self.prune_depth = int(depth)
        head = self.head_hash()
        if head is None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            pruned = self._prune_for(head)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._forget(pruned)

    def _prune_for(self, head: bytes) -> list:
        """Inside a transaction: prune every block more than ``prune_depth`` below
        ``head`` not pruned yet, side blocks included; returns their hashes."""
        (height,) = self._db.execute("SELECT height FROM blocks WHERE hash=?", (head,)).fetchone()
        limit = height - self.prune_depth
        if limit <= self.pruned_below:
            return []
        rows = self._db.execute("SELECT hash, height, body FROM blocks WHERE height >= ? AND height < ?",
                                (max(1, self.pruned_below), limit)).fetchall()
        for h, at, body in rows:
            if self.on_prune is not None and self._canonical_hash(at) == bytes(h):
                self.on_prune(self._get(bytes(h)))  # the last look at a canonical block's messages
            self._db.execute("UPDATE blocks SET body=? WHERE hash=?", (prune_stored_body(bytes(body), at), h))
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('pruned_below', ?)", (str(limit),))
        self.pruned_below = limit
        return [bytes(r[0]) for r in rows]

    @_flushed
    def has_body(self, block_hash: bytes) -> bool:
        row = self._db.execute("SELECT substr(body, 1, 1) FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return row is not None and not is_pruned_body(bytes(row[0]))

    def _move_head(self, block_hash: bytes) -> None:
        row = self._db.execute("SELECT height FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        if row is None:
            raise StoreError(f"cannot move the head to unknown block 0x{block_hash.hex()}")
        self._db.execute("DELETE FROM canonical WHERE height > ?", (row[0],))
        h = block_hash
        while True:
            parent, height = self._db.execute("SELECT parent, height FROM blocks WHERE hash=?", (h,)).fetchone()
            cur = self._db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()
            if cur is not None and cur[0] == h:
                break
            self._db.execute("INSERT OR REPLACE INTO canonical(height, hash) VALUES (?,?)", (height, h))
            if height == 0:
                break
            h = parent
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('head', ?)", (block_hash,))

    @_flushed
    def truncate_to(self, block_hash: bytes) -> None:
        """Make ``block_hash`` the head and forget every block above its height, in one
        transaction. For a run resuming from its checkpoint: the store is its own and
        nobody else writes it (a node never forgets a valid block)."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT height FROM blocks WHERE hash=?", (block_hash,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path} has no block 0x{block_hash.hex()}")
            self._db.execute("DELETE FROM blocks WHERE height > ?", (row[0],))
            self._move_head(block_hash)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        with self._lock:
            self._cache.clear()

    @_flushed
    def set_head(self, block_hash: bytes) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._move_head(block_hash)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get(self, block_hash: bytes) -> Optional[Block]:
        with self._lock:
            block = self._pending.get(block_hash, self._cache.get(block_hash))
        if block is not None:
            return block
        self.flush()
        return self._get(block_hash)

    def _get(self, block_hash: bytes) -> Optional[Block]:
        with self._lock:
            block = self._cache.get(block_hash)
        if block is not None:
            return block
        row = self._db.execute("SELECT header, body FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        if row is None:
            return None
        block = decode_stored(row[0], row[1], max_dim=self._max_dim, pruned_ok=True)
        self._remember(block)
        return block

    @_flushed
    def raw(self, block_hash: bytes) -> Optional[tuple[bytes, bytes]]:
        """The stored (header, compressed body) bytes, unchecked."""
        row = self._db.execute("SELECT header, body FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    @_flushed
    def head_hash(self) -> Optional[bytes]:
        row = self._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        return None if row is None else bytes(row[0])

    @_flushed
    def canonical_hash(self, height: int) -> Optional[bytes]:
        return self._canonical_hash(height)

    def _canonical_hash(self, height: int) -> Optional[bytes]:
        row = self._db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    @_flushed
    def canonical_length(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM canonical").fetchone()
        return int(row[0])

    def entries(self) -> Iterator[tuple[Header, int]]:
        """Every stored (header, total work); StoreError when a row's hash, parent or
        height column disagrees with its header bytes, or a cell has the wrong type."""
        self.flush()
        rows = self._db.execute("SELECT hash, parent, height, work, header FROM blocks ORDER BY height")
        try:
            for h, parent, height, work, header_raw in rows:
                header = decode_header(bytes(header_raw))
                if h != header.hash or parent != header.parent or height != header.height:
                    raise StoreError(f"{self.path}: the stored columns of block {header.height} do not match its "
                                     "header; run `learningchain chain verify` on it")
                yield header, int(work)
        except (DecodeError, TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: a stored block is corrupt ({exc}); run `learningchain chain verify` "
                             "on it") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: the store cannot be read ({exc})") from None

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file; a failed write
        is raised (as StoreError) after the file is closed."""
        try:
            if self._queue is not None:
                self._queue.join()
                self._queue.put(None)
                self._writer.join()
                self._queue = None
        finally:
            self._db.close()
        self._raise_failure()


def _meta_int(row, key: str, path) -> int:
    if row is None:
        return 0
    value = row[0].decode() if isinstance(row[0], bytes) else row[0]
    if not isinstance(value, str) or not value.isdigit():
        raise StoreError(f"{path}: the stored {key} is {row[0]!r}, not a decimal integer")
    return int(value)


def open_store(path: str | os.PathLike | None) -> BlockStore:
    return MemoryStore() if path is None else SQLiteStore(path)


def open_readonly(path: str | os.PathLike) -> SQLiteStore:
    """The chain store at ``path`` (a chain.sqlite or a directory holding one), read-only."""
    path = Path(path)
    if path.is_dir():
        path = path / "chain.sqlite"
    return SQLiteStore(path, readonly=True)
