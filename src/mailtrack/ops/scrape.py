"""``GET /metrics``: every process's counters (``mailtrack.metrics``) plus gauges read from the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import metrics as _counters  # noqa: F401  # chooses the multiprocess directory before anything counts
from ..store import queue, workers


class _FromStore(Collector):
    """Queue depth and worker liveness, read when scraped (one small query each)."""

    def __init__(self, store: Any, dead_after: float) -> None:
        self.store = store
        self.dead_after = dead_after

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        with self.store.read() as conn:
            counts, oldest = queue.totals(conn, now)
            alive = sum(1 for w in workers.listed(conn) if now - w.heartbeat_at <= self.dead_after)
        depth = GaugeMetricFamily("mailtrack_queue_depth", "Recipients waiting for delivery, by state",
                                  labels=["state"])
        for state, n in counts.items():
            depth.add_metric([state], n)
        yield depth
        yield GaugeMetricFamily("mailtrack_queue_oldest_age_seconds", "Age of the oldest queued recipient's email",
                                value=oldest)
        yield GaugeMetricFamily("mailtrack_workers_alive", "Delivery workers with a fresh heartbeat", value=alive)


def render(store: Any, dead_after: float) -> tuple[bytes, str]:
    """The exposition text for a scrape: every process's counters plus the store's gauges."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_FromStore(store, dead_after))
    return generate_latest(registry), CONTENT_TYPE_LATEST
