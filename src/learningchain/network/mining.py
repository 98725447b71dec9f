"""The daemon's computing-node role: build a block once the mempool is full enough, and mine it.

Proof of work runs in short slices of nonces between network events, so several
nodes really race; under proof of authority the in-turn signer seals at once and
the others back off. A node mines only when caught up (see ``ready``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from ..protocol.block import Block
from ..protocol.consensus import authority_rank, sealed_recently

__all__ = ["MinerRole", "SYNC_HOLD_S"]

log = logging.getLogger("learningchain.net")

#: How long a sync holds mining and holding back after it last delivered a new block.
SYNC_HOLD_S = 2.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class MinerRole:
    """Mining and sealing of a :class:`~.daemon.NodeDaemon` (a part of it)."""

    def ready(self) -> bool:
        """Hold and mine only when caught up and, at start, connected enough."""
        if not self.ever_ready and len(self.transport.peers) >= self.net.min_peers:
            self.ever_ready = True
        return self.ever_ready and not self._sync_delivering()

    def _sync_delivering(self) -> bool:
        """A sync holds mining and holding back only while it delivers new blocks.

        A peer that claims more work and then answers slowly, or not at all, must
        not stall the node: a sync holds nothing back until it has stored a
        block, and only for ``SYNC_HOLD_S`` after the last one, so the node goes
        on with its round while a silent sync carries on (or times out).
        """
        s = self.sync
        return s is not None and s.progress_at > 0 and time.monotonic() - s.progress_at < SYNC_HOLD_S

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
        rank = authority_rank(self.params, self.key.address, base.height + 1)
        if time.monotonic() < ready_at + rank * self.net.poa_backoff_ms / 1000:
            return
        if self.node.head_hash != base.hash:
            return
        if sealed_recently(self.params, self.key.address, base.header, self.node.header) is not None:
            return  # another authority's turn: the chain refuses a seal this soon
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
