"""A node's Prometheus metrics (``GET /metrics``), taken from its /status document.

Every metric is read from the same status snapshot the node serves at /status,
at scrape time, so the two never disagree. The text is written by the standard
client library (``prometheus_client``), in its own registry (no process-global
state, so several nodes in one process, as in the tests, keep theirs apart).
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["NodeCollector", "metrics_response", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _by_reason(family, counts: dict) -> None:
    for reason, count in sorted((counts or {}).items()):
        family.add_metric([str(reason)], float(count))


class NodeCollector:
    """Collects from ``snapshot()``, the node's status without the test-error evaluation."""

    def __init__(self, snapshot: Callable[[], dict], *, clock: Callable[[], float] = time.time):
        self.snapshot = snapshot
        self.clock = clock

    def collect(self):
        s = self.snapshot()
        yield GaugeMetricFamily("learningchain_height", "Height of the node's head block", value=s["height"])
        head_age = max(0.0, self.clock() - s["head_timestamp_ms"] / 1000.0)
        yield GaugeMetricFamily("learningchain_head_age_seconds", "Seconds since the head block's timestamp",
                                value=head_age)
        yield GaugeMetricFamily("learningchain_peers", "Connected, authenticated peers", value=len(s["peers"]))
        yield GaugeMetricFamily("learningchain_syncing", "1 while the node syncs from a peer",
                                value=1.0 if s["syncing"] else 0.0)
        yield GaugeMetricFamily("learningchain_mining", "1 while the node mines", value=1.0 if s["mining"] else 0.0)
        yield GaugeMetricFamily("learningchain_mempool_messages", "Messages waiting on the head",
                                value=s["mempool"])
        yield CounterMetricFamily("learningchain_blocks_mined", "Blocks this node mined", value=s["blocks_mined"])
        yield CounterMetricFamily("learningchain_messages_sent", "Messages this node's holders sent",
                                  value=s["messages_sent"])
        for name, key, what in (("blocks_received", "blocks_received", "Blocks received from peers"),
                                ("messages_received", "messages_received", "Messages received from peers")):
            if key in s:
                yield CounterMetricFamily(f"learningchain_{name}", what, value=s[key])
        refused = CounterMetricFamily("learningchain_blocks_refused", "Blocks refused, by reason", labels=["reason"])
        _by_reason(refused, s.get("rejected_blocks"))
        yield refused
        refused = CounterMetricFamily("learningchain_messages_refused", "Messages refused, by reason",
                                      labels=["reason"])
        _by_reason(refused, s.get("rejected_messages"))
        yield refused
        uptime = float(s.get("uptime_s") or 0.0)
        yield GaugeMetricFamily("learningchain_mining_rate_blocks_per_second",
                                "Blocks this node mined per second of uptime",
                                value=s["blocks_mined"] / uptime if uptime > 0 else 0.0)
        if s.get("seconds_per_round") is not None:
            yield GaugeMetricFamily("learningchain_round_seconds", "Mean seconds between the canonical chain's "
                                    "recent blocks", value=s["seconds_per_round"])
        yield GaugeMetricFamily("learningchain_uptime_seconds", "Seconds since the node started", value=uptime)


def metrics_response(snapshot: Callable[[], dict]) -> tuple:
    """(200, content type, Prometheus text) for the status server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(snapshot))
    return 200, CONTENT_TYPE, generate_latest(registry)
