"""The daemon's holder role: the holders this process hosts answer each new head once.

On every new head below the chain's last round, the hosted holders (their shards
cut by ``partition_indices`` exactly as ``learningchain train`` cuts them) compute
their messages at the head's model (Eq. 6, 9-13) and gossip them. What they
already answered (``held``) and spent (``spent.json``) survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from fractions import Fraction

import numpy as np

from ..errors import ConfigError
from ..holder import DataHolder, holders_within_budget, make_messages
from ..parties import AnswerOnce
from ..privacy.secure import SecureRandom
from .node_files import load_or_create_key

__all__ = ["HolderRole"]

log = logging.getLogger("learningchain.net")

#: Heads whose answer is remembered (in memory and in the node's ``held`` file): a
#: head, once left, never comes back as the head, since the heaviest chain only gains work.
HELD_REMEMBERED = 64


class HolderRole:
    """The hosted holders of a :class:`~.daemon.NodeDaemon` (a part of it)."""

    def _load_held(self) -> AnswerOnce:
        """Heads this node's holders answered before a restart: a holder sends at most one
        message per head, even across a crash (a second one would spend privacy again)."""
        answered = []
        try:
            text = (self.data_dir / "held").read_text()
        except OSError:
            text = ""
        for line in text.split():
            try:
                answered.append(bytes.fromhex(line))
            except ValueError:
                continue
        return AnswerOnce(answered, remember=HELD_REMEMBERED, on_claim=self._save_held)

    def _save_held(self, head: bytes) -> None:
        """Write the heads answered (the last HELD_REMEMBERED) before the messages leave."""
        path = self.data_dir / "held"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(h.hex() for h in self.held.answered) + "\n")
        os.replace(tmp, path)

    def _make_holders(self, cfg) -> list:
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

    async def _holder_loop(self) -> None:
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
            self.held.claim(head.hash)  # saved before the messages leave
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
