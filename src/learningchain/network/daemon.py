"""``learningchain node``: one party of the network as a long-running process.

A :class:`NodeDaemon` drives the same sans-I/O :class:`~learningchain.node.Node`
as the in-process simulation, over the TCP :class:`~.tcp.Transport`:

* **holder** role: on every new head below the chain's last round, the holders
  this process hosts (their shards cut by ``partition_indices`` exactly as
  ``learningchain train`` cuts them) compute their messages at the head's model
  (Eq. 6, 9-13) and gossip them;
* **computing node** role: once the mempool holds all K messages for the head
  (or ``collect_ms`` has passed), it builds a block and mines it in short slices
  of nonces between network events, so several nodes really race; under proof of
  authority the in-turn signer seals at once and the others back off;
* every node validates every block it hears of by recomputation
  (``Node.on_block``), relays what it accepted, drops what it has seen before,
  fetches the parent of an orphan and syncs from a heavier peer with block
  locators, and answers ``GET /status``.

Its data directory holds ``chain.sqlite`` (only validated blocks, the head moved
in the same transaction), ``node.key`` (the node's secp256k1 key: miner address
and, under proof of authority, signer; mode 0600), one ``holder-K.key`` per
hosted holder, ``node.log`` and, after a clean stop, ``status.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..crypto import PrivateKey
from ..errors import ConfigError, DecodeError, InvalidBlock, InvalidMessage, LearningChainError, StoreError
from ..node import Node, SQLiteStore, VerdictCache
from ..node.body import body_mismatch
from ..node.node import block_size
from ..node.store import decompress_body
from ..privacy.secure import generator_of
from ..protocol.block import Block, decode_block
from ..protocol.consensus import block_work, in_turn_authority
from ..protocol.forkchoice import is_heavier
from ..protocol.transition import validate_header_link
from ..protocol.message import decode_message
from ..types import hexstr
from .config import NetConfigFile, parse_address
from .peer import Peer
from .tcp import Penalty, Transport
from .wire import (
    PROTOCOL_VERSION,
    Hello,
    Kind,
    block_hash_of,
    decode_blocks_end,
    decode_get_block,
    decode_get_blocks,
    decode_messages,
    decode_sync_block,
    encode_blocks_end,
    encode_get_block,
    encode_get_blocks,
    encode_sync_block,
    message_hash_of,
)

__all__ = ["NodeDaemon", "network_setup", "load_or_create_key", "ROLES", "run_node", "parse_indices"]

log = logging.getLogger("learningchain.net")

ROLES = ("both", "holder", "miner", "relay")
#: Refusals of a holder's message that an honest relay can cause (races, stale rounds).
_BENIGN_MESSAGE = {"unknown-base", "wrong-round", "duplicate-identity", "mempool-full"}
#: Refusals of a block that are not the sender's fault.
_BENIGN_BLOCK = {"unseen-message", "too-few-messages"}
#: How long a sync holds mining and holding back after it last delivered a new block.
_SYNC_HOLD_S = 2.0
#: Bounds of the blocks a node keeps aside unvalidated: orphans (in the Node) and
#: losing blocks (deferred), each by count and by encoded bytes.
MAX_DEFERRED = 256
MAX_DEFERRED_BYTES = 32 << 20
MAX_ORPHAN_BYTES = 32 << 20
#: Of each pool, the share one peer's blocks may take (its oldest go first beyond it).
PEER_POOL_SHARE = 4  # a quarter
MAX_PARKED_BYTES = 32 << 20  # blocks held for their messages (unseen = "wait")


def network_setup(conf: NetConfigFile):
    """The chain every node of this config joins: data, shards, parameters, genesis.

    A pure function of the config (the seed included), so each process, on any
    machine, builds the same genesis from the same file.
    """
    from ..experiments.train import build_chain_setup

    net = conf.network
    consensus = net.consensus or conf.train.consensus

    members = tuple("0x" + parse_address(a).hex() for a in net.members)
    if members and conf.train.fresh_identities:
        raise ConfigError("[network] members (enrolled holders) and fresh_identities exclude each other: an "
                          "enrolled holder sends every message under its one enrolled key")
    if net.budget is not None and not members:
        raise ConfigError("[network] budget needs enrolled holders: list them in [network] members "
                          "(`learningchain network up --permissioned` does it)")

    def hook(params):
        if members:
            # one message per enrolled holder per round: no more can be valid
            params = params.replace(members=members, max_messages=len(members), budget=net.budget)
        if consensus == "poa":
            if not net.authorities:
                raise ConfigError("[network] consensus = \"poa\" needs authorities = [\"0x...\", ...] "
                                  "(the addresses printed by `learningchain node --init`)")
            auths = tuple("0x" + parse_address(a).hex() for a in net.authorities)
            return params.replace(consensus="poa", authorities=auths, difficulty=0, retarget={})
        return params.replace(consensus="pow", retarget=net.retarget())

    from ..experiments.train import GENESIS_TIME_MS

    when = GENESIS_TIME_MS if net.genesis_time_ms is None else net.genesis_time_ms
    return build_chain_setup(conf.train, params_hook=hook, genesis_time_ms=when)


def load_or_create_key(path: Path, *, create: bool = True) -> PrivateKey:
    """A secp256k1 key kept in ``path`` as hex, readable by its owner only (0600).

    A key file that group or others can read is refused, the way ssh refuses one.
    """
    path = Path(path)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigError(f"key file {path} has mode {mode:o}: it must be readable by its owner only "
                              f"(chmod 600 {path})")
        text = path.read_text().strip()
        try:
            return PrivateKey(bytes.fromhex(text.removeprefix("0x")))
        except ValueError as exc:
            raise ConfigError(f"key file {path} does not hold a 32-byte hex secp256k1 key ({exc})") from None
    if not create:
        raise ConfigError(f"no key file at {path}")
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.secret.hex() + "\n")
    return key


def parse_indices(text) -> tuple:
    """``"3"``, ``"0,4,8"`` or ``"0-7"`` (mixable) as sorted unique holder indices."""
    if text is None or text == "":
        return ()
    if isinstance(text, int):
        return (text,)
    if isinstance(text, (list, tuple)):
        return tuple(sorted({int(i) for i in text}))
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ConfigError(f"holder index {part!r} is not a number or a range A-B") from None
    return tuple(sorted(out))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Sync:
    peer: Peer
    request: int
    started: float
    start_height: int
    last_activity: float
    blocks: int = 0
    cpu_started: float = 0.0
    progress_at: float = 0.0  # when a block it delivered was last stored
    request_blocks: int = 0  # blocks delivered for the current request
    request_new: int = 0  # of which were new and stored


class NodeDaemon:
    """One node process (or one node inside a test's event loop)."""

    def __init__(self, conf: NetConfigFile, *, data_dir, listen: Optional[tuple] = ("127.0.0.1", 0),
                 advertise: Optional[tuple] = None, peers=(), role: str = "both", holder_indices=(),
                 http: Optional[tuple] = None, name: Optional[str] = None):
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        cfg = conf.train.resolved()
        if cfg.byzantine:
            raise ConfigError("byzantine holders are simulated by `learningchain train`; "
                              "node processes run honest holders (set byzantine = 0)")
        self.conf = conf
        self.net = conf.network
        self.role = role
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = self._lock()
        try:
            self._init_node(conf, cfg, role, holder_indices, listen, advertise, peers, name)
        except BaseException:
            node = getattr(self, "node", None)
            if node is not None:
                node.store.close()
            self._unlock()
            raise
        self.http_addr = http
        self.mines = role in ("both", "miner") and (
            self.params.consensus == "pow"
            or ("0x" + self.key.address.hex()) in self.params.authorities)
        # gossip and sync state
        self.seen: "OrderedDict[bytes, None]" = OrderedDict()
        self.pending: "OrderedDict[bytes, list]" = OrderedDict()  # base hash -> [(payload, peer)]
        self.pending_count = 0
        self.parked: "OrderedDict[bytes, tuple]" = OrderedDict()  # block hash -> (block, peer, deadline)
        self.deferred: "OrderedDict[bytes, tuple]" = OrderedDict()  # losing blocks, unvalidated: (block, peer)
        self.deferred_bytes = 0
        self._deferred_size: dict[bytes, int] = {}
        self._pool_origin: dict[bytes, int] = {}  # deferred or orphan block -> id of the peer that sent it
        self.sync: Optional[_Sync] = None
        self.serving: dict[int, asyncio.Task] = {}  # id(peer) -> task answering its GET_BLOCKS
        self.last_sync: dict = {}
        self._request = 0
        self._fetching: dict[bytes, float] = {}  # block hash asked for by GET_BLOCK -> when
        # rounds
        self.head_since = time.monotonic()
        self.ready_at: dict[bytes, float] = {}
        self.held: set = self._load_held()  # heads the hosted holders already sent messages for
        self.ever_ready = self.net.min_peers == 0
        self.blocks_mined = 0
        self.messages_sent = 0
        self.mining = False
        self.started = time.time()
        self._eval_cache: tuple = (b"", None)
        self._evaluator = None
        self._wake_holders: Optional[asyncio.Event] = None
        self._wake_miner: Optional[asyncio.Event] = None
        self._stop: Optional[asyncio.Event] = None
        self._tasks: list = []
        self._http_runner = None

    # -- setup helpers ------------------------------------------------------------------
    def _init_node(self, conf, cfg, role, holder_indices, listen, advertise, peers, name) -> None:
        self.key = load_or_create_key(self.data_dir / "node.key")
        self.name = name or self.data_dir.name
        setup = network_setup(conf)
        self.setup = setup
        self.params = setup.params
        self.genesis = setup.genesis
        store = SQLiteStore(self.data_dir / "chain.sqlite")
        try:
            # The verdict cache lets the node skip re-validating the blocks it just built
            # itself by the same rule (see _own_block); every other block is validated.
            self.node = Node(setup.genesis, store=store, name=self.name, key=self.key,
                             check_unseen=False, verdicts=VerdictCache(), max_orphan_bytes=MAX_ORPHAN_BYTES)
        except StoreError as exc:
            store.close()
            raise StoreError(f"{self.data_dir}: {exc}; this data directory belongs to another chain "
                             "(another config or seed)") from None
        self.stop_height = self.net.stop_height if self.net.stop_height is not None else self.params.rounds
        self.holder_indices = parse_indices(holder_indices)
        if self.holder_indices and role in ("miner", "relay"):
            raise ConfigError(f"role {role!r} hosts no holders; drop --holder-index or use --role both/holder")
        for i in self.holder_indices:
            if not 0 <= i < cfg.holders:
                raise ConfigError(f"holder index {i} is out of range for K = {cfg.holders} holders")
        self.train_cfg = cfg
        self.holders = self._make_holders(cfg)
        self.transport = Transport(self, genesis_hash=self.genesis.hash, key=self.key,
                                   config=self.net, listen=listen, advertise=advertise, bootstrap=tuple(peers),
                                   name=self.name)

    def _lock(self):
        import fcntl

        fd = os.open(self.data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"{self.data_dir} is in use by another running node") from None
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load_held(self) -> set:
        """Heads this node's holders answered before a restart: a holder sends at most one
        message per head, even across a crash (a second one would spend privacy again)."""
        self._held_log: list = []
        try:
            text = (self.data_dir / "held").read_text()
        except OSError:
            return set()
        for line in text.split():
            try:
                bytes.fromhex(line)
            except ValueError:
                continue
            self._held_log.append(line)
        return {bytes.fromhex(line) for line in self._held_log}

    def _save_held(self, head: bytes) -> None:
        path = self.data_dir / "held"
        self._held_log = (self._held_log + [head.hex()])[-64:]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(self._held_log) + "\n")
        os.replace(tmp, path)

    def _make_holders(self, cfg) -> list:
        from ..holder import DataHolder

        ds = self.setup.dataset
        holders = []
        for k in self.holder_indices:
            idx = self.setup.parts[k]
            # Fresh noise from the OS on every start: a restarted holder must never
            # replay the noise of its earlier messages. With secure_rng (the default
            # here) noise, batches and fresh identities come from the OS CSPRNG itself.
            if cfg.secure_rng is False:
                rng = np.random.default_rng(secrets.randbits(128))
            else:
                from ..privacy.secure import SecureRandom

                rng = SecureRandom()
            h = DataHolder(k, ds.x_train[idx], ds.y_train[idx], self.params, rng=rng,
                           fresh_identity=cfg.fresh_identities, sampling=cfg.sampling)
            if not cfg.fresh_identities:
                h.key = load_or_create_key(self.data_dir / f"holder-{k}.key")
                h.identities = [h.key.address]
                if not self.params.enrolled(h.key.address):
                    raise ConfigError(f"holder {k}'s key 0x{h.key.address.hex()} ({self.data_dir / f'holder-{k}.key'}) "
                                      f"is not among the chain's enrolled members: add it to [network] members "
                                      f"(`learningchain node --init --holder-index {k}` prints it)")
            holders.append(h)
        if self.params.budget is not None:
            self._load_spent(holders)
        return holders

    def _load_spent(self, holders: list) -> None:
        """What the hosted holders released before a restart, against the chain's budget
        (messages that never reached a block were still seen by the network)."""
        from fractions import Fraction

        try:
            saved = json.loads((self.data_dir / "spent.json").read_text())
        except (OSError, ValueError):
            saved = {}
        for h in holders:
            entry = saved.get(str(h.index)) if isinstance(saved, dict) else None
            try:
                h.sent, h.spent = int(entry[0]), Fraction(entry[1])
            except (TypeError, ValueError, IndexError, ZeroDivisionError):
                continue

    def _save_spent(self) -> None:
        path = self.data_dir / "spent.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(h.index): [h.sent, str(h.spent)] for h in self.holders}, sort_keys=True))
        os.replace(tmp, path)

    # -- the transport's handler --------------------------------------------------------------
    def hello(self) -> Hello:
        host, port = self.transport.advertise or ("", 0)
        return Hello(PROTOCOL_VERSION, self.genesis.hash, self.key.address, host, port, self.node.height,
                     self.node.head_hash, self.node.head_work, f"learningchain/{self.role}")

    def on_peer(self, peer: Peer) -> None:
        h = peer.hello
        if h.work > self.node.head_work or (h.work == self.node.head_work and h.head not in self.node.headers):
            self.start_sync(peer)
        if not self.ever_ready and len(self.transport.peers) >= self.net.min_peers:
            self.ever_ready = True
        self._poke()

    def on_peer_closed(self, peer: Peer) -> None:
        task = self.serving.pop(id(peer), None)
        if task is not None:
            task.cancel()
        if self.sync is not None and self.sync.peer is peer:
            self._end_sync(complete=False, why=f"peer left: {peer.close_reason}")

    def on_frame(self, peer: Peer, kind: int, payload: bytes) -> None:
        if kind == Kind.MESSAGE:
            self._on_message_frames(peer, [payload])
        elif kind == Kind.MESSAGES:
            self._on_message_frames(peer, decode_messages(payload))
        elif kind == Kind.BLOCK:
            self._on_block_frame(peer, payload, synced=False)
        elif kind == Kind.SYNC_BLOCK:
            request, raw = decode_sync_block(payload)
            if request not in peer.requests:
                self.transport.penalize(peer, Penalty.UNSOLICITED, "unsolicited", f"block for request {request}, "
                                                                                 "which this node never sent")
                return
            s = self.sync if self.sync is not None and self.sync.peer is peer else None
            stored = len(self.node.headers)
            self._on_block_frame(peer, raw, synced=True)
            if s is not None and s is self.sync:
                s.last_activity = time.monotonic()
                s.blocks += 1
                s.request_blocks += 1
                if len(self.node.headers) > stored:
                    s.request_new += 1
                    s.progress_at = s.last_activity
        elif kind == Kind.BLOCKS_END:
            self._on_blocks_end(peer, *decode_blocks_end(payload))
        elif kind == Kind.GET_BLOCKS:
            request, locator, limit = decode_get_blocks(payload)
            self._serve(peer, self._serve_blocks(peer, request, locator, limit))
        elif kind == Kind.GET_BLOCK:
            request, h = decode_get_block(payload)
            self._serve(peer, self._serve_block(peer, request, h))
        else:
            self.transport.penalize(peer, Penalty.UNKNOWN_KIND, "unknown-type", f"frame kind {kind} is not expected here")

    # -- messages ---------------------------------------------------------------------------
    def _mark_seen(self, h: bytes) -> None:
        self.seen[h] = None
        if len(self.seen) > 200_000:
            for _ in range(20_000):
                self.seen.popitem(last=False)

    def _on_message_frames(self, peer: Peer, payloads: list) -> None:
        relay: list = []
        for payload in payloads:
            h = message_hash_of(payload)
            peer.known.add(h)
            if h in self.seen:
                continue
            self._mark_seen(h)
            try:
                msg = decode_message(payload, max_dim=self.params.dim)
            except DecodeError as exc:
                self.transport.penalize(peer, Penalty.MALFORMED, "malformed", str(exc))
                continue
            self._admit(msg, payload, peer, relay)
        self._relay(relay, exclude=peer)

    def _relay(self, items: list, exclude: Optional[Peer] = None) -> None:
        if items:
            self.transport.broadcast_messages(items, exclude=exclude)
            self._retry_parked()
            self._poke()

    def _admit(self, msg, payload: bytes, peer: Optional[Peer], relay: Optional[list] = None) -> bool:
        """Hand a message to the node; relay it now, or add it to ``relay`` for one batch."""
        try:
            self.node.on_message(msg)
        except InvalidMessage as exc:
            if exc.reason == "unknown-base":
                self._hold_pending(msg.base, payload, peer)
            elif exc.reason in _BENIGN_MESSAGE:
                log.debug("%s ignored message %s: %s", self.name, hexstr(msg.hash)[:14], exc)
            elif peer is not None:
                self.transport.penalize(peer, Penalty.INVALID_MESSAGE, exc.reason,
                                        f"message {hexstr(msg.hash)[:14]}: {exc.detail}")
            else:
                log.warning("%s: own message refused: %s", self.name, exc)
            return False
        if relay is not None:
            relay.append((msg.hash, payload))
        else:
            self._relay([(msg.hash, payload)], exclude=peer)
        return True

    def _hold_pending(self, base: bytes, payload: bytes, peer) -> None:
        """A message can overtake the block it was computed at; keep it until that block comes."""
        self.pending.setdefault(base, []).append((payload, peer))
        self.pending.move_to_end(base)
        self.pending_count += 1
        while self.pending_count > 8192 and self.pending:
            _, dropped = self.pending.popitem(last=False)
            self.pending_count -= len(dropped)

    def _release_pending(self, base: bytes) -> None:
        waiting = self.pending.pop(base, None)
        if not waiting:
            return
        self.pending_count -= len(waiting)
        relay: list = []
        for payload, peer in waiting:
            try:
                msg = decode_message(payload, max_dim=self.params.dim)
            except DecodeError:  # pragma: no cover - decoded once already
                continue
            self._admit(msg, payload, peer if peer is not None and not peer.closed.is_set() else None, relay)
        self._relay(relay)

    def submit_messages(self, msgs) -> int:
        """Messages from the holders this process hosts, gossiped in one batch."""
        relay: list = []
        for msg in msgs:
            self._mark_seen(msg.hash)
            if self._admit(msg, msg.encode(), None, relay):
                self.messages_sent += 1
        self._relay(relay)
        return len(relay)

    # -- blocks ------------------------------------------------------------------------------
    def _on_block_frame(self, peer: Peer, raw: bytes, *, synced: bool) -> None:
        try:
            h = block_hash_of(raw)
        except DecodeError as exc:
            self.transport.penalize(peer, Penalty.MALFORMED, "malformed", f"block: {exc}")
            return
        peer.known.add(h)
        self._fetching.pop(h, None)
        if h in self.seen or h in self.node.headers or h in self.node.orphans or h in self.deferred:
            return
        try:
            block = decode_block(raw, max_dim=self.params.dim, max_messages=self.params.max_messages)
        except DecodeError as exc:
            # not marked seen: ``h`` is the hash of a header that may be real, sent with a
            # broken body; the real block must still be taken when it comes
            self.node.rejected_by_reason["malformed"] += 1
            self.transport.penalize(peer, Penalty.MALFORMED, "malformed", f"block {hexstr(h)[:14]}: {exc}")
            return
        self.handle_block(block, peer, synced=synced)

    def _defer(self, block: Block, peer: Optional[Peer]) -> bool:
        """Put off validating a gossiped block that cannot become the head.

        When blocks race, most of them lose the fork choice on arrival (less work,
        or equal work and a higher hash). Like Bitcoin nodes, which neither
        validate nor relay blocks off their best chain, a node keeps such a block
        aside unvalidated, and validates it only if a descendant makes its branch
        the heavier one (the descendant arrives as an orphan naming it).
        """
        parent = self.node.headers.get(block.parent)
        if parent is None or block.header.genesis != self.genesis.hash:
            return False
        if body_mismatch(block, self.params.dim) is not None:
            return False  # not the block its header names: the node refuses this copy now
        work = self.node.work[block.parent] + block_work(block.header, self.params)
        if is_heavier(work, block.hash, self.node.head_work, self.node.head_hash):
            return False
        try:  # only a header with its proof of work done and its links right takes room here
            validate_header_link(block.header, parent, self.params, genesis_hash=self.genesis.hash,
                                 ancestor=self.node.header)
        except InvalidBlock:
            return False  # the node refuses it now, for good
        size = block_size(block)
        self.deferred[block.hash] = (block, peer)
        self._deferred_size[block.hash] = size
        self.deferred_bytes += size
        self._bound_peer_share(peer, block.hash, self.deferred, self._deferred_size, MAX_DEFERRED_BYTES,
                               self._undefer)
        while len(self.deferred) > MAX_DEFERRED or (len(self.deferred) > 1
                                                    and self.deferred_bytes > MAX_DEFERRED_BYTES):
            self._undefer(next(iter(self.deferred)))
        if self.deferred_bytes > MAX_DEFERRED_BYTES:  # one block larger than the whole pool
            self._undefer(block.hash)
            return False
        return True

    def _undefer(self, h: bytes) -> Optional[tuple]:
        entry = self.deferred.pop(h, None)
        if entry is not None:
            self.deferred_bytes -= self._deferred_size.pop(h)
            self._pool_origin.pop(h, None)
        return entry

    def _bound_peer_share(self, peer, h: bytes, pool, sizes: dict, limit: int, drop) -> None:
        """Keep one peer's blocks in ``pool`` under 1/PEER_POOL_SHARE of ``limit`` bytes,
        dropping its oldest, so that one peer cannot push everyone else's out."""
        if peer is None:
            return
        self._pool_origin[h] = id(peer)
        mine = [k for k in pool if self._pool_origin.get(k) == id(peer)]  # oldest first
        total = sum(sizes.get(k, 0) for k in mine)
        while len(mine) > 1 and total > limit // PEER_POOL_SHARE:
            k = mine.pop(0)
            total -= sizes.get(k, 0)
            drop(k)
            self._pool_origin.pop(k, None)

    def handle_block(self, block: Block, peer: Optional[Peer], *, synced: bool = False, defer: bool = True) -> bool:
        """Validate and apply a block; relay it when accepted. True when it is now stored."""
        if defer and not synced and peer is not None and self._defer(block, peer):
            return False
        self._undefer(block.hash)
        old_head = self.node.head_hash
        check = self.net.unseen == "wait" and not synced and peer is not None
        try:
            outcome = self.node.on_block(block, check_unseen=check)
        except InvalidBlock as exc:
            if exc.reason == "unseen-message":
                deadline = time.monotonic() + self.net.unseen_grace_ms / 1000
                self.parked[block.hash] = (block, peer, deadline)
                while len(self.parked) > 64 or (len(self.parked) > 1 and sum(
                        block_size(b) for b, _, _ in self.parked.values()) > MAX_PARKED_BYTES):
                    self.parked.popitem(last=False)
                log.info("%s holds block %d %s until its messages arrive: %s", self.name, block.height,
                         hexstr(block.hash)[:14], exc.detail)
                return False
            if block.hash in self.node.rejected:
                # final: the block itself is invalid. A refusal of one copy (a body that
                # does not match its header) or by local policy leaves the hash open.
                self._mark_seen(block.hash)
            if peer is None:
                log.warning("%s refused block %d: %s", self.name, block.height, exc)
            elif exc.reason in _BENIGN_BLOCK:
                log.info("%s refused block %d from %s: %s", self.name, block.height, peer.label(), exc)
            else:
                self.transport.penalize(peer, Penalty.INVALID_BLOCK, exc.reason,
                                        f"block {block.height} {hexstr(block.hash)[:14]}: {exc.detail}")
            return False
        if outcome.status == "orphan":
            # not marked seen: an orphan the node later evicts may be sent again
            put_off = self._undefer(outcome.missing)
            if put_off is not None:  # its branch now matters: validate the parent, which connects it
                parent, origin = put_off
                self.handle_block(parent, origin, defer=False)
                return block.hash in self.node.headers
            if peer is not None:
                if block.hash in self.node.orphans:
                    self._bound_peer_share(peer, block.hash, self.node.orphans, self.node.orphan_sizes,
                                           self.node.max_orphan_bytes, self.node.drop_orphan)
                self._fetch_parent(peer, outcome.missing)
            return False
        self._mark_seen(block.hash)
        accepted = [block.hash] if outcome.status == "accepted" else []
        accepted += list(outcome.connected)
        for h in accepted:
            self.parked.pop(h, None)
            if not synced or h != block.hash:
                b = block if h == block.hash else self.node.block(h)
                if b is not None:
                    self.transport.broadcast(Kind.BLOCK, b.encode(), item=h, exclude=peer)
            self._release_pending(h)
        if self.node.head_hash != old_head:
            self._on_new_head(synced=synced)
        return bool(accepted)

    def _on_new_head(self, *, synced: bool) -> None:
        self.head_since = time.monotonic()
        if not synced or self.sync is None:
            head = self.node.headers[self.node.head_hash]
            log.info("%s head %d %s (miner %s)", self.name, head.height, hexstr(head.hash)[:14],
                     hexstr(head.miner)[:10])
        self._poke()

    def _retry_parked(self) -> None:
        if not self.parked:
            return
        for h, (block, peer, deadline) in list(self.parked.items()):
            if all(self.node.mempool.seen(m.hash) for m in block.messages):
                self.parked.pop(h, None)
                self.handle_block(block, peer)

    def _expire_parked(self) -> None:
        now = time.monotonic()
        for h, (block, peer, deadline) in list(self.parked.items()):
            if deadline <= now:
                self.parked.pop(h, None)
                self.transport.refuse("unseen-message",
                                      f"block {block.height} {hexstr(h)[:14]}: its messages were never broadcast "
                                      f"to this node within {self.net.unseen_grace_ms} ms (it will still be "
                                      f"followed if the network builds on it)")

    # -- sync --------------------------------------------------------------------------------
    def _next_request(self) -> int:
        self._request = (self._request + 1) & 0xFFFFFFFF
        return self._request

    def start_sync(self, peer: Peer) -> bool:
        """Ask ``peer`` for the blocks after the newest one our chains share."""
        now = time.monotonic()
        if peer.sync_failed:
            return False
        if self.sync is not None:
            if self.sync.peer is peer or now - self.sync.last_activity < self.net.sync_timeout_s:
                return False
            self._sync_failed(f"no answer for {self.net.sync_timeout_s:g} s")
        request = self._next_request()
        batch = self.net.sync_batch
        peer.requests[request] = batch
        if peer.send(Kind.GET_BLOCKS, encode_get_blocks(request, self.node.locator(), batch)):
            self.sync = _Sync(peer, request, now, self.node.height, now, cpu_started=time.process_time())
            log.info("%s syncing from %s (our height %d)", self.name, peer.label(), self.node.height)
            return True
        peer.requests.pop(request, None)
        return False

    def _continue_sync(self) -> None:
        s = self.sync
        request = self._next_request()
        s.peer.requests[request] = self.net.sync_batch
        s.request = request
        s.request_blocks = s.request_new = 0
        s.last_activity = time.monotonic()
        s.peer.send(Kind.GET_BLOCKS, encode_get_blocks(request, self.node.locator(), self.net.sync_batch))

    def _on_blocks_end(self, peer: Peer, request: int, count: int, more: bool) -> None:
        if peer.requests.pop(request, None) is None:
            self.transport.penalize(peer, Penalty.UNSOLICITED, "unsolicited", f"end of request {request}, "
                                                                             "which this node never sent")
            return
        s = self.sync
        if s is not None and s.peer is peer and s.request == request:
            # Continue only on what was delivered, never on what the answer claims:
            # a peer that answers "more" without new blocks would loop us for ever.
            if more and s.request_new > 0:
                self._continue_sync()
                return
            if more:
                self._sync_failed(f"it said more blocks follow but delivered {s.request_blocks} "
                                  f"({s.request_new} new; it claimed {count})")
            elif peer.hello is not None and peer.hello.work > self.node.head_work \
                    and peer.hello.head not in self.node.headers:
                self._sync_failed(f"it ended at our height {self.node.height} without the chain of work "
                                  f"{peer.hello.work} that its hello claimed")
            else:
                peer.synced = True
                self._end_sync(complete=True)
        missing = self._missing_parents()
        if missing:
            for h in missing[:4]:
                self._fetch_block(peer, h)

    def _sync_failed(self, why: str) -> None:
        """The sync peer stalled or fell short: penalise it and never sync from it again."""
        s = self.sync
        if s is None:
            return
        s.peer.sync_failed = True
        self._end_sync(complete=False, why=why)
        self.transport.penalize(s.peer, Penalty.SYNC_STALL, "sync-stall", why)

    def _end_sync(self, *, complete: bool, why: str = "") -> None:
        s = self.sync
        self.sync = None
        if s is None:
            return
        seconds = time.monotonic() - s.started
        gained = self.node.height - s.start_height
        self.last_sync = {"peer": s.peer.label(), "blocks": s.blocks, "from_height": s.start_height,
                          "to_height": self.node.height, "seconds": round(seconds, 4),
                          "cpu_seconds": round(time.process_time() - s.cpu_started, 4), "complete": complete}
        log.info("%s sync from %s %s: %d blocks received, height %d -> %d in %.2f s%s", self.name, s.peer.label(),
                 "done" if complete else "stopped", s.blocks, s.start_height, self.node.height, seconds,
                 f" ({why})" if why else "")
        if gained > 0:
            self.transport.broadcast(Kind.BLOCK, self.node.head.encode(), item=self.node.head_hash)
        self._poke()

    def _missing_parents(self) -> list:
        return [o.parent for o in self.node.orphans.values() if o.parent not in self.node.headers]

    def _fetch_parent(self, peer: Peer, missing: bytes) -> None:
        """An orphan arrived: sync along the sender's chain, or ask for the one parent."""
        if self.sync is None:
            if self.start_sync(peer):
                return
        self._fetch_block(peer, missing)

    def _fetch_block(self, peer: Peer, h: bytes) -> None:
        now = time.monotonic()
        if h in self.node.headers or now - self._fetching.get(h, 0.0) < 2.0:
            return
        self._fetching[h] = now
        request = self._next_request()
        peer.requests[request] = 1
        peer.send(Kind.GET_BLOCK, encode_get_block(request, h))

    def _serve(self, peer: Peer, coro) -> None:
        task = self.serving.get(id(peer))
        if task is not None and not task.done():
            coro.close()
            self.transport.penalize(peer, Penalty.UNSOLICITED, "overlapping-request",
                                    "a block request while its previous one is still being answered")
            return
        task = asyncio.get_running_loop().create_task(coro)
        self.serving[id(peer)] = task
        task.add_done_callback(lambda t, k=id(peer): self.serving.pop(k, None) if self.serving.get(k) is t else None)

    def _wire_block(self, h: bytes) -> Optional[bytes]:
        store = self.node.store
        if isinstance(store, SQLiteStore):
            raw = store.raw(h)
            if raw is None:
                return None
            header, body = raw
            return len(header).to_bytes(4, "little") + header + decompress_body(body)
        block = store.get(h)
        return None if block is None else block.encode()

    async def _serve_blocks(self, peer: Peer, request: int, locator: list, limit: int) -> None:
        limit = max(0, min(limit, self.net.sync_batch))
        start = self.node.fork_point(locator)
        sent = 0
        if start is None:
            await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, 0, False))
            return
        height = start + 1
        while sent < limit and height <= self.node.height:
            h = self.node.store.canonical_hash(height)
            raw = None if h is None else self._wire_block(h)
            if raw is None:
                break
            await peer.send_wait(Kind.SYNC_BLOCK, encode_sync_block(request, raw))
            peer.known.add(h)
            sent += 1
            height += 1
        more = height <= self.node.height
        await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, sent, more))

    async def _serve_block(self, peer: Peer, request: int, h: bytes) -> None:
        raw = self._wire_block(h) if h in self.node.headers else None
        if raw is not None:
            await peer.send_wait(Kind.SYNC_BLOCK, encode_sync_block(request, raw))
            peer.known.add(h)
        await peer.send_wait(Kind.BLOCKS_END, encode_blocks_end(request, 1 if raw else 0, False))

    # -- rounds: holders and mining -------------------------------------------------------------
    def _poke(self) -> None:
        if self._wake_miner is not None:
            self._wake_miner.set()
            self._wake_holders.set()

    def ready(self) -> bool:
        """Hold and mine only when caught up and, at start, connected enough."""
        if not self.ever_ready and len(self.transport.peers) >= self.net.min_peers:
            self.ever_ready = True
        return self.ever_ready and not self._sync_delivering()

    def _sync_delivering(self) -> bool:
        """A sync holds mining and holding back only while it delivers new blocks.

        A peer that claims more work and then answers slowly, or not at all, must
        not stall the node: a sync holds nothing back until it has stored a
        block, and only for ``_SYNC_HOLD_S`` after the last one, so the node goes
        on with its round while a silent sync carries on (or times out).
        """
        s = self.sync
        return s is not None and s.progress_at > 0 and time.monotonic() - s.progress_at < _SYNC_HOLD_S

    async def _holder_loop(self) -> None:
        from ..holder import holders_within_budget, make_messages

        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self._sleep_or_wake(self._wake_holders, 0.2)
            if not self.holders or not self.ready():
                continue
            head = self.node.head
            if head.height >= self.stop_height or head.hash in self.held:
                continue
            settle = self.net.holder_delay_ms / 1000 - (time.monotonic() - self.head_since)
            if settle > 0:  # let a fork at this height resolve before spending privacy on it
                await asyncio.sleep(settle)
                continue
            self.held.add(head.hash)
            self._save_held(head.hash)
            sending = holders_within_budget(self.holders, head, self.node.spend_at(head.hash))
            if not sending:
                continue
            t0 = time.perf_counter()
            reports = await loop.run_in_executor(None, make_messages, sending, head)
            t1 = time.perf_counter()
            if self.params.budget is not None:
                self._save_spent()  # before the messages leave: a crash must not forget them
            self.submit_messages([r.message for r in reports])
            log.debug("%s holders sent %d messages at height %d (%.1f ms computing, %.1f ms sending)", self.name,
                      len(reports), head.height, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)

    async def _miner_loop(self) -> None:
        while not self._stop.is_set():
            await self._sleep_or_wake(self._wake_miner, 0.1)
            if not self.mines or not self.ready():
                continue
            base = self.node.head
            if base.height >= self.stop_height:
                continue
            count = self.node.mempool.count(base.hash)
            if count < self.params.min_messages:
                continue
            now = time.monotonic()
            if count < self.params.holders and now - self.head_since < self.net.collect_ms / 1000:
                continue
            ready_at = self.ready_at.setdefault(base.hash, now)
            if len(self.ready_at) > 256:
                self.ready_at.pop(next(iter(self.ready_at)))
            if self.params.consensus == "poa":
                self._seal_authority(base, ready_at)
            else:
                await self._mine(base)

    def _own_block(self, sealed: Block) -> None:
        """A block this node built with ``build_block`` and sealed: valid by construction."""
        self.blocks_mined += 1
        self.node.verdicts.blocks[sealed.hash] = None
        self.handle_block(sealed, None)

    def _seal_authority(self, base: Block, ready_at: float) -> None:
        auths = [bytes.fromhex(a.removeprefix("0x")) for a in self.params.authorities]
        height = base.height + 1
        in_turn = in_turn_authority(self.params, height)
        me = self.key.address
        rank = (auths.index(me) - auths.index(in_turn)) % len(auths)
        if time.monotonic() < ready_at + rank * self.net.poa_backoff_ms / 1000:
            return
        if self.node.head_hash != base.hash:
            return
        template = self.node.template(timestamp=_now_ms(), parent=base)
        self._own_block(self.node.seal(template))

    async def _mine(self, base: Block) -> None:
        """Proof of work in slices of about 5 ms, yielding to the network in between."""
        self.mining = True
        try:
            count = self.node.mempool.count(base.hash)
            template = self.node.template(timestamp=_now_ms(), parent=base)
            log.debug("%s mining on height %d with %d messages", self.name, base.height, count)
            nonce = secrets.randbits(62)
            first = nonce
            started = time.perf_counter()
            tries = 2048
            while not self._stop.is_set():
                t0 = time.perf_counter()
                sealed = self.node.seal(template, start=nonce, max_tries=tries)
                spent = time.perf_counter() - t0
                nonce += tries
                if sealed is not None:
                    log.debug("%s found a block at height %d after %d tries in %.1f ms", self.name, base.height + 1,
                              int.from_bytes(sealed.header.seal, "little") - first + 1,
                              (time.perf_counter() - started) * 1e3)
                    self._own_block(sealed)
                    return
                tries = max(256, min(1 << 20, int(tries * 0.005 / max(spent, 1e-6))))
                await asyncio.sleep(0)
                if self.node.head_hash != base.hash or not self.ready():
                    log.debug("%s stopped mining on height %d after %d tries in %.1f ms", self.name, base.height,
                              nonce - first, (time.perf_counter() - started) * 1e3)
                    return
                now_count = self.node.mempool.count(base.hash)
                if now_count != count:
                    count = now_count
                    template = self.node.template(timestamp=_now_ms(), parent=base)
        finally:
            self.mining = False

    @staticmethod
    async def _sleep_or_wake(event: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        event.clear()

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.25)
            self._expire_parked()
            s = self.sync
            if s is not None and time.monotonic() - s.last_activity > self.net.sync_timeout_s:
                self._sync_failed(f"no answer for {self.net.sync_timeout_s:g} s")
            if self.sync is None:
                best = None
                for peer in self.transport.peers.values():
                    if peer.hello and not peer.synced and not peer.sync_failed \
                            and peer.hello.work > self.node.head_work \
                            and peer.hello.head not in self.node.headers:
                        best = peer if best is None or peer.hello.work > best.hello.work else best
                if best is not None:
                    self.start_sync(best)
            if len(self._pool_origin) > len(self.deferred) + len(self.node.orphans):
                for h in [h for h in self._pool_origin if h not in self.deferred and h not in self.node.orphans]:
                    del self._pool_origin[h]
            cache = self.node.verdicts.blocks
            while len(cache) > 4096:
                cache.pop(next(iter(cache)))
            for h, t in list(self._fetching.items()):
                if time.monotonic() - t > 10:
                    del self._fetching[h]

    # -- status ----------------------------------------------------------------------------
    def test_error(self) -> Optional[float]:
        head = self.node.head_hash
        if self._eval_cache[0] == head:
            return self._eval_cache[1]
        try:
            import torch

            from ..models import build_model, error_rate, set_flat

            if self._evaluator is None:
                ds = self.setup.dataset
                self._evaluator = (build_model(self.setup.spec), torch.as_tensor(ds.x_test),
                                   torch.as_tensor(ds.y_test))
            model, x, y = self._evaluator
            w = self.node.head.model
            if not np.all(np.isfinite(w)):
                err = 1.0
            else:
                set_flat(model, w)
                err = float(error_rate(model, self.setup.spec, x, y))
        except Exception as exc:  # an observer, never a reason to fail the node
            log.debug("evaluation failed: %s", exc)
            err = None
        self._eval_cache = (head, err)
        return err

    def status(self, *, evaluate: bool = True) -> dict:
        node = self.node
        head = node.headers[node.head_hash]
        peers = []
        for p in self.transport.peers.values():
            addr = p.address
            peers.append({"id": hexstr(p.node_id), "address": f"{addr[0]}:{addr[1]}" if addr else None,
                          "direction": "out" if p.outbound else "in", "misbehaviour": p.score})
        return {
            "name": self.name,
            "node_id": hexstr(self.key.address),
            "role": self.role,
            "consensus": self.params.consensus,
            "genesis": hexstr(self.genesis.hash),
            "height": head.height,
            "head": hexstr(head.hash),
            "work": node.head_work,
            "round": head.height,
            "rounds": self.stop_height,
            "done": head.height >= self.stop_height,
            "difficulty": node.next_difficulty() if self.params.consensus == "pow" else head.difficulty,
            "head_timestamp_ms": head.timestamp,
            "listen": f"{self.transport.advertise[0]}:{self.transport.advertise[1]}" if self.transport.advertise else None,
            "peers": peers,
            "mempool": node.mempool.count(node.head_hash),
            "holders": list(self.holder_indices),
            "mining": self.mining,
            "blocks_mined": self.blocks_mined,
            "messages_sent": self.messages_sent,
            "syncing": self.sync is not None,
            "last_sync": self.last_sync,
            "rejected_blocks": dict(node.rejected_by_reason),
            "rejected_messages": dict(node.rejected_messages),
            "refused": dict(self.transport.refusals),
            "orphans": len(node.orphans),
            "orphan_bytes": node.orphan_bytes,
            "deferred": len(self.deferred),
            "deferred_bytes": self.deferred_bytes,
            "test_error": self.test_error() if evaluate else None,
            "privacy": self.privacy_status(),
            "uptime_s": round(time.time() - self.started, 3),
        }

    def privacy_status(self) -> dict:
        """How the hosted holders draw their noise and batches (``privacy.generator``, ``privacy.sampling``)."""
        return {"mechanism": self.params.mechanism, "sampling": self.train_cfg.sampling,
                "generator": generator_of(self.train_cfg.secure_rng, in_process=False) if self.holder_indices else None}

    async def _start_http(self) -> None:
        from .status_http import StatusServer

        host, port = self.http_addr
        server = StatusServer(lambda evaluate: self.status(evaluate=evaluate), host=host, port=port)
        self.http_addr = await server.start()
        self._http_runner = server

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._wake_holders = asyncio.Event()
        self._wake_miner = asyncio.Event()
        self._stop = asyncio.Event()
        await self.transport.start()
        if self.http_addr is not None:
            await self._start_http()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._holder_loop()), loop.create_task(self._miner_loop()),
                       loop.create_task(self._housekeeping())]
        log.info("%s started: node %s, genesis %s, height %d, listening on %s, status on %s, holders %s, %s",
                 self.name, hexstr(self.key.address), hexstr(self.genesis.hash)[:18], self.node.height,
                 self.transport.advertise, self.http_addr, list(self.holder_indices) or "none",
                 "mining" if self.mines else "not mining")

    async def stop(self) -> None:
        if self._stop is None:
            return
        self._stop.set()
        self._poke()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        for t in list(self.serving.values()):
            t.cancel()
        await self.transport.stop()
        if self._http_runner is not None:
            await self._http_runner.close()
        try:
            with open(self.data_dir / "status.json", "w") as fh:
                json.dump(self.status(), fh, indent=2)
                fh.write("\n")
        except (OSError, LearningChainError) as exc:  # pragma: no cover
            log.warning("could not write status.json: %s", exc)
        self.node.store.close()
        self._unlock()
        log.info("%s stopped at height %d", self.name, self.node.height)

    async def run_until_signalled(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, done.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        try:
            await done.wait()
        finally:
            await self.stop()


def run_node(daemon_factory, *, log_file: Optional[Path] = None, verbose: bool = False,
             console: bool = True) -> int:
    """Run a daemon in this process until SIGTERM/SIGINT; logs to ``log_file`` (and stderr)."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    root = logging.getLogger("learningchain")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers = [logging.StreamHandler()] if console else []
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)

    async def main():
        from .status_http import RateLimitedExceptionHandler

        asyncio.get_running_loop().set_exception_handler(RateLimitedExceptionHandler(root))
        daemon = daemon_factory()
        await daemon.run_until_signalled()

    asyncio.run(main())
    return 0
