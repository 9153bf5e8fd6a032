"""Prometheus text exposition of the latest snapshot.

Built per request in its own CollectorRegistry (never the global one, which
would also expose this process's own Python metrics and keep stale labels).
Statuses are numbers: 0 ok, 1 warn, 2 critical.  Every name is listed in
docs/metrics.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from apps.metrics.evaluate import LEVEL

# (metric suffix, snapshot field, help)
QUEUE_GAUGES = (
    ("queue_depth", "depth", "Messages waiting in the queue (all priority sub-queues)."),
    ("queue_oldest_age_seconds", "oldest_age_seconds", "Age of the oldest waiting message."),
    ("queue_consumers", "consumers", "Alive workers consuming the queue."),
    ("queue_processed_per_minute", "processed_per_minute", "Tasks finished from the queue in the last minute."),
    ("queue_warn_threshold", "warn", "Effective warn threshold of the queue depth."),
    ("queue_critical_threshold", "critical", "Effective critical threshold of the queue depth."),
)
REDIS_GAUGES = (
    ("redis_used_memory_bytes", "used_memory", "used_memory of the role's Redis server."),
    ("redis_maxmemory_bytes", "maxmemory", "maxmemory of the server (0 = none)."),
    ("redis_memory_percent", "memory_percent", "used_memory over maxmemory (or system memory), percent."),
    ("redis_evicted_keys_delta", "evicted_keys_delta", "Keys evicted since the previous sample."),
    ("redis_rejected_connections_delta", "rejected_connections_delta",
     "Connections rejected (maxclients) since the previous sample."),
    ("redis_connected_clients", "connected_clients", "Connected clients."),
    ("redis_maxclients", "maxclients", "maxclients of the server."),
    ("redis_uptime_seconds", "uptime_seconds", "Seconds since the server started."),
)
PREFIX = "flowwatch_"


class SnapshotCollector:
    def __init__(self, snapshot: dict[str, Any], now: float) -> None:
        self.snapshot, self.now = snapshot, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._queues()
        yield from self._redis()
        yield from self._overall()

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        queues = self.snapshot.get("queues", [])
        labels = ["queue", "lane", "group"]
        for suffix, field, help_text in QUEUE_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + suffix, help_text, labels=labels)
            for q in queues:
                if q.get(field) is not None:
                    gauge.add_metric([q["name"], q.get("lane") or "", q.get("group") or ""], float(q[field]))
            yield gauge
        status = GaugeMetricFamily(PREFIX + "queue_status", "Queue status: 0 ok, 1 warn, 2 critical.",
                                   labels=labels)
        for q in queues:
            status.add_metric([q["name"], q.get("lane") or "", q.get("group") or ""], LEVEL.get(q["status"], 2))
        yield status

    def _redis(self) -> Iterator[GaugeMetricFamily]:
        roles = self.snapshot.get("redis", [])
        up = GaugeMetricFamily(PREFIX + "redis_up", "1 when the role's Redis answered the last collection.",
                               labels=["role"])
        status = GaugeMetricFamily(PREFIX + "redis_status", "Role status: 0 ok, 1 warn, 2 critical.",
                                   labels=["role"])
        for r in roles:
            up.add_metric([r["role"]], 1.0 if r["reachable"] else 0.0)
            status.add_metric([r["role"]], LEVEL.get(r["status"], 2))
        yield up
        yield status
        for suffix, field, help_text in REDIS_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + suffix, help_text, labels=["role"])
            for r in roles:
                if r.get(field) is not None:
                    gauge.add_metric([r["role"]], float(r[field]))
            yield gauge

    def _overall(self) -> Iterator[GaugeMetricFamily]:
        unacked = self.snapshot.get("unacked") or {}
        for suffix, value, help_text in (
            ("unacked_messages", unacked.get("count"), "Messages taken by workers and not yet acknowledged."),
            ("unacked_oldest_age_seconds", unacked.get("oldest_age_seconds"), "Age of the oldest unacked message."),
            ("workers_alive", sum(1 for w in self.snapshot.get("workers", []) if w.get("alive")),
             "Workers whose heartbeat is fresh."),
            ("collection_duration_seconds", (self.snapshot.get("duration_ms") or 0) / 1000,
             "How long the controller's last collection took."),
            ("snapshot_age_seconds", self.now - _epoch(self.snapshot.get("collected_at")),
             "Seconds since the controller collected this snapshot."),
        ):
            gauge = GaugeMetricFamily(PREFIX + suffix, help_text)
            if value is not None:
                gauge.add_metric([], float(value))
            yield gauge


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def render(snapshot: dict[str, Any], now: float) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, now))
    return generate_latest(registry), CONTENT_TYPE_LATEST
