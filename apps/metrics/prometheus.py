"""Prometheus text exposition of the latest snapshot, and of the counters.

Built per request in its own CollectorRegistry (never the global one, which
would also expose this process's own Python metrics and keep stale labels).
Statuses are numbers: 0 ok, 1 warn, 2 critical.  Every name is listed in
docs/metrics.md.

Gauges and Redis' own counters come from the snapshot; the counters of
events, restarts and alerts from the database (apps/metrics/counters.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Iterator

from django.db import DatabaseError
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from apps.metrics import build, counters
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
# Redis' own monotonic counters from INFO, as the snapshot carries them:
# (metric name without _total, snapshot field, help)
REDIS_COUNTERS = (
    ("redis_evicted_keys", "evicted_keys", "Keys evicted by the server (INFO evicted_keys); resets when it restarts."),
    ("redis_rejected_connections", "rejected_connections",
     "Connections the server refused at maxclients (INFO rejected_connections); resets when it restarts."),
)
PREFIX = "flowwatch_"
# Counters kept in the database: counter name -> (metric name without _total, help, labels)
COUNTED = {
    counters.EVENTS: ("events", "Events recorded: status changes, restarts, unreachable and recovered roles.",
                      ("kind", "subject_type", "new_status")),
    counters.ALERTS_SENT: ("alerts_sent", "Events handed to an alert channel, by whether the delivery worked.",
                           ("channel", "result")),
    counters.RESTARTS: ("redis_restarts", "Restarts (a changed run_id) of the server behind each role.", ("role",)),
}

logger = logging.getLogger("flowwatch.metrics")


class SnapshotCollector:
    def __init__(self, snapshot: dict[str, Any], now: float) -> None:
        self.snapshot, self.now = snapshot, now

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield self._processed()
        yield from self._redis()
        yield from self._redis_counters()
        yield self._redis_info()
        yield from self._overall()
        yield from self._settings()

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        queues = self.snapshot.get("queues", [])
        labels = ["queue", "lane", "group"]
        for suffix, field, help_text in QUEUE_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + suffix, help_text, labels=labels)
            for q in queues:
                if q.get(field) is not None:
                    gauge.add_metric(_queue_labels(q), float(q[field]))
            yield gauge
        status = GaugeMetricFamily(PREFIX + "queue_status", "Queue status: 0 ok, 1 warn, 2 critical.",
                                   labels=labels)
        for q in queues:
            status.add_metric(_queue_labels(q), LEVEL.get(q["status"], 2))
        yield status

    def _processed(self) -> CounterMetricFamily:
        counter = CounterMetricFamily(PREFIX + "queue_processed",
                                      "Tasks finished from the queue (fw:processed:total); resets if it expires.",
                                      labels=["queue", "lane", "group"])
        for q in self.snapshot.get("queues", []):
            if q.get("processed_total") is not None:
                counter.add_metric(_queue_labels(q), float(q["processed_total"]))
        return counter

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

    def _redis_counters(self) -> Iterator[CounterMetricFamily]:
        for name, field, help_text in REDIS_COUNTERS:
            counter = CounterMetricFamily(PREFIX + name, help_text, labels=["role"])
            for r in self.snapshot.get("redis", []):
                if r.get(field) is not None:
                    counter.add_metric([r["role"]], float(r[field]))
            yield counter

    def _redis_info(self) -> InfoMetricFamily:
        info = InfoMetricFamily(PREFIX + "redis", "The server behind each role: version, eviction policy, persistence.",
                                labels=["role"])
        for r in self.snapshot.get("redis", []):
            if r.get("reachable"):
                persistent = (r.get("persistence") or {}).get("persistent")
                info.add_metric([r["role"]], {"version": r.get("redis_version") or "",
                                              "maxmemory_policy": r.get("maxmemory_policy") or "",
                                              "persistent": "" if persistent is None else str(bool(persistent)).lower()})
        return info

    def _settings(self) -> Iterator[GaugeMetricFamily]:
        thresholds = self.snapshot.get("thresholds") or {}
        controller = self.snapshot.get("controller") or {}
        for suffix, value, help_text in (
            ("controller_interval_seconds", controller.get("interval"), "Seconds between the controller's ticks."),
            ("redis_memory_warn_percent", thresholds.get("memory_warn_percent"),
             "Memory percent at which a Redis role warns."),
            ("redis_memory_critical_percent", thresholds.get("memory_critical_percent"),
             "Memory percent at which a Redis role is critical."),
        ):
            gauge = GaugeMetricFamily(PREFIX + suffix, help_text)
            if value is not None:
                gauge.add_metric([], float(value))
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


class CounterCollector:
    """Events, restarts and alerts counted in the database, and the build.

    Restarts of every role and alerts of every channel and result are shown
    from 0 before the first one: Prometheus' increase() cannot see the first
    count of a series that appears with it.
    """

    def __init__(self, counts: dict[str, list[tuple[dict[str, str], int]]] | None, roles: list[str]) -> None:
        self.counts = counts
        self.zeros = {counters.RESTARTS: [{"role": role} for role in roles],
                      counters.ALERTS_SENT: [{"channel": c, "result": r} for c in ("email", "webhook")
                                             for r in ("sent", "failed")]}

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(PREFIX + "build", "The Flowwatch build serving /metrics.")
        info.add_metric([], {"version": build.version()})
        yield info
        if self.counts is None:  # the database did not answer: no counter rather than a wrong one
            return
        for name, (metric, help_text, labels) in COUNTED.items():
            counter = CounterMetricFamily(PREFIX + metric, help_text, labels=list(labels))
            values = {tuple(zero.get(label, "") for label in labels): 0.0 for zero in self.zeros.get(name, [])}
            for found, value in self.counts.get(name, []):
                values[tuple(found.get(label, "") for label in labels)] = float(value)
            for label_values, value in values.items():
                counter.add_metric(list(label_values), value)
            yield counter


def _queue_labels(q: dict[str, Any]) -> list[str]:
    return [q["name"], q.get("lane") or "", q.get("group") or ""]


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_counts() -> dict[str, list[tuple[dict[str, str], int]]] | None:
    """The database's counters, or None when it does not answer (the snapshot's figures still serve)."""
    try:
        return counters.read(COUNTED)
    except DatabaseError:
        logger.warning("/metrics: the database did not answer; the event, restart and alert counters are left out")
        return None


def render(snapshot: dict[str, Any], now: float,
           counts: dict[str, list[tuple[dict[str, str], int]]] | None = None) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, now))
    registry.register(CounterCollector(counts, [r["role"] for r in snapshot.get("redis", [])]))
    return generate_latest(registry), CONTENT_TYPE_LATEST
