"""The daemon's status: what ``GET /status`` answers and ``status.json`` keeps."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import numpy as np
import torch

from ..explorer import ChainView, ExplorerApp
from ..models import build_model, error_rate, set_flat
from ..privacy.secure import generator_of
from ..types import hexstr
from .metrics import metrics_response
from .status_http import StatusServer

__all__ = ["StatusRole"]

log = logging.getLogger("learningchain.net")


class StatusRole:
    """The status report of a :class:`~.daemon.NodeDaemon` (a part of it)."""

    def test_error(self) -> Optional[float]:
        head = self.node.head_hash
        if self._eval_cache[0] == head:
            return self._eval_cache[1]
        try:
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
        if err is not None:  # what the explorer plots: the test error of each head evaluated
            self.error_history.append((self.node.headers[head].height, err))
        return err

    def status(self, *, evaluate: bool = True) -> dict:
        node = self.node
        head = node.headers[node.head_hash]
        peers = []
        for p in self.transport.peers.values():
            addr = p.address
            peers.append({"id": hexstr(p.node_id), "address": f"{addr[0]}:{addr[1]}" if addr else None,
                          "direction": "out" if p.outbound else "in", "misbehaviour": p.score,
                          "pruned_from": p.holds_from or None})
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
            "blocks_received": self.blocks_received,
            "messages_received": self.messages_received,
            "seconds_per_round": self.seconds_per_round(),
            "syncing": self.sync is not None,
            # 0 for an archival node; a pruned one holds whole blocks from this height on
            "pruned_below": node.store.pruned_below,
            "last_sync": self.last_sync,
            "rejected_blocks": dict(node.rejected_by_reason),
            "rejected_messages": dict(node.rejected_messages),
            "refused": dict(self.transport.refusals),
            "orphans": len(node.orphans),
            "orphan_bytes": node.orphan_bytes,
            "deferred": len(self.deferred),
            "deferred_bytes": self.deferred_bytes,
            "held_messages": self.policy.pending_count,
            "held_bytes": self.policy.held_bytes,
            "test_error": self.test_error() if evaluate else None,
            "privacy": self.privacy_status(),
            "test_error_history": [list(x) for x in self.error_history],
            "uptime_s": round(time.time() - self.started, 3),
        }

    def seconds_per_round(self, window: int = 10) -> Optional[float]:
        """Mean time between the last ``window`` blocks of the canonical chain, from their timestamps."""
        top = self.node.headers[self.node.head_hash]
        low = top
        while low.height > max(1, top.height - window):  # walk back through the head's ancestry
            low = self.node.headers[low.parent]
        if low.height >= top.height:
            return None
        return round((top.timestamp - low.timestamp) / 1000 / (top.height - low.height), 6)

    def privacy_status(self) -> dict:
        """How the hosted holders draw their noise and batches (``privacy.generator``, ``privacy.sampling``)."""
        spent = max((float(h.spent) for h in self.holders), default=None)
        return {"mechanism": self.params.mechanism, "sampling": self.train_cfg.sampling,
                "generator": generator_of(self.train_cfg.secure_rng, in_process=False) if self.holder_indices else None,
                # basic composition over the messages each hosted holder released; the largest
                "epsilon_spent": spent if self.params.mechanism != "none" else None,
                "messages_per_holder": max((h.sent for h in self.holders), default=0)}

    def _http_routes(self, loop: asyncio.AbstractEventLoop):
        """/metrics (Prometheus text) and the chain explorer, beside /status. They are
        answered in a worker thread; the node's state is read on its own event loop."""

        def on_loop(evaluate: bool) -> dict:
            async def snapshot():
                return self.status(evaluate=evaluate)

            return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=30)

        explorer = ExplorerApp(ChainView(self.data_dir, node_status=lambda: on_loop(True)))

        def routes(path: str, query: dict):
            if path == "/metrics":
                return metrics_response(lambda: on_loop(False))
            return explorer.handle(path, query)

        return routes

    async def _start_http(self) -> None:
        host, port = self.http_addr
        server = StatusServer(lambda evaluate: self.status(evaluate=evaluate), host=host, port=port,
                              routes=self._http_routes(asyncio.get_running_loop()))
        self.http_addr = await server.start()
        self._http_runner = server
