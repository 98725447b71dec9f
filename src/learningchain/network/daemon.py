"""``learningchain node``: one party of the network as a long-running process.

A :class:`NodeDaemon` drives the same sans-I/O :class:`~learningchain.node.Node`
as the in-process simulation, over the TCP :class:`~.tcp.Transport`. What to do
with every block, message and sync answer is the node's own policy
(:class:`~learningchain.node.policy.NodePolicy`, the object the simulation drives
too); the daemon moves bytes, keeps time and talks to peers, in parts by role:

* :mod:`.gossip`: frames in, the policy's actions applied (relay, fetch, penalise);
* :mod:`.sync`: catching up from a heavier peer with block locators, and serving;
* :mod:`.holding`: the **holder** role, the hosted holders answering each new head;
* :mod:`.mining`: the **computing node** role, building and mining (or sealing) blocks;
* :mod:`.node_status`: ``GET /status`` and ``status.json``.

Its data directory holds ``chain.sqlite`` (only validated blocks, the head moved
in the same transaction), ``node.key`` (the node's secp256k1 key: miner address
and, under proof of authority, signer; mode 0600), one ``holder-K.key`` per
hosted holder, ``node.log`` and, after a clean stop, ``status.json``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, LearningChainError, StoreError
from ..node import NETWORK_RULES, Node, SQLiteStore, VerdictCache, prune_refusal
from ..node.policy import MAX_ORPHAN_BYTES
from ..parties import network_setup
from ..types import hexstr
from .config import NetConfigFile
from .gossip import GossipRole, now_ms
from .holding import HolderRole
from .mining import MinerRole
from .node_files import load_or_create_key, parse_indices
from .node_status import StatusRole
from .status_http import RateLimitedExceptionHandler
from .sync import SyncRole, SyncState
from .tcp import Transport
from .wire import PROTOCOL_VERSION, Hello

__all__ = ["NodeDaemon", "network_setup", "load_or_create_key", "ROLES", "run_node", "parse_indices"]

log = logging.getLogger("learningchain.net")

ROLES = ("both", "holder", "miner", "relay")


class NodeDaemon(GossipRole, SyncRole, HolderRole, MinerRole, StatusRole):
    """One node process (or one node inside a test's event loop)."""

    def __init__(self, conf: NetConfigFile, *, data_dir, listen: Optional[tuple] = ("127.0.0.1", 0),
                 advertise: Optional[tuple] = None, peers=(), role: str = "both", holder_indices=(),
                 http: Optional[tuple] = None, name: Optional[str] = None, prune: bool = False):
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
            self._init_node(conf, cfg, role, holder_indices, listen, advertise, peers, name, prune)
        except BaseException:
            node = getattr(self, "node", None)
            if node is not None:
                node.store.close()
            self._unlock()
            raise
        self.http_addr = http
        self.mines = role in ("both", "miner") and (
            self.params.consensus == "pow"
            or self.params.is_authority(self.key.address))
        # gossip and sync state (the pools of waiting blocks and messages are the policy's)
        self.policy = self.node.policy
        self.sync: Optional[SyncState] = None
        self.serving: dict[int, asyncio.Task] = {}  # id(peer) -> task answering its block requests
        self.serve_queue: dict[int, deque] = {}  # id(peer) -> its block requests waiting their turn
        self.last_sync: dict = {}
        self._request = 0
        self._fetching: dict[bytes, float] = {}  # block hash asked for by GET_BLOCK -> when
        # rounds
        self.head_since = time.monotonic()
        self.ready_at: dict[bytes, float] = {}
        self.held = self._load_held()  # heads the hosted holders already sent messages for
        self.ever_ready = self.net.min_peers == 0
        self.blocks_mined = 0
        self.messages_sent = 0
        self.error_history: deque = deque(maxlen=2048)  # (height, test error) of the heads evaluated
        self.blocks_received = 0  # block frames from peers, gossiped or synced
        self.messages_received = 0  # messages from peers
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
    def _init_node(self, conf, cfg, role, holder_indices, listen, advertise, peers, name, prune=False) -> None:
        self.key = load_or_create_key(self.data_dir / "node.key")
        self.name = name or self.data_dir.name
        setup = network_setup(conf)
        self.setup = setup
        self.params = setup.params
        self.genesis = setup.genesis
        why = prune_refusal(self.params) if prune else None
        if why is not None:
            raise ConfigError(f"--prune: {why}")
        self.pruned = prune
        store = SQLiteStore(self.data_dir / "chain.sqlite")
        try:
            # The verdict cache lets the node skip re-validating the blocks it just built
            # itself by the same rule (see _own_block); every other block is validated.
            rules = replace(NETWORK_RULES, park_unseen=self.net.unseen == "wait",
                            unseen_grace_ms=self.net.unseen_grace_ms)
            self.node = Node(setup.genesis, store=store, name=self.name, key=self.key, check_unseen=False,
                             verdicts=VerdictCache(), max_orphan_bytes=MAX_ORPHAN_BYTES, rules=rules, prune=prune)
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

    # -- the transport's handler --------------------------------------------------------------
    def hello(self) -> Hello:
        host, port = self.transport.advertise or ("", 0)
        return Hello(PROTOCOL_VERSION, self.genesis.hash, self.key.address, host, port, self.node.height,
                     self.node.head_hash, self.node.head_work, f"learningchain/{self.role}")

    def _poke(self) -> None:
        if self._wake_miner is not None:
            self._wake_miner.set()
            self._wake_holders.set()

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
            self.apply(self.policy.expire(now_ms()))
            s = self.sync
            if s is not None and time.monotonic() - s.last_activity > self.net.sync_timeout_s:
                self._sync_failed(f"no answer for {self.net.sync_timeout_s:g} s")
            if self.sync is None:
                self._sync_from_best()
            self.policy.tidy()
            for h, t in list(self._fetching.items()):
                if time.monotonic() - t > 10:
                    del self._fetching[h]

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
        asyncio.get_running_loop().set_exception_handler(RateLimitedExceptionHandler(root))
        daemon = daemon_factory()
        await daemon.run_until_signalled()

    asyncio.run(main())
    return 0
