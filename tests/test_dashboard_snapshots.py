"""Snapshots shaped as docs/metrics.md ("The snapshot") documents, for the page's tests.

The page consumes what the controller publishes; these helpers publish the
same shapes to the same places (the cache key and the channels group), so the
page can be tested on its own.  The tests at the bottom, and
tests/test_gaps_snapshots.py, keep the helpers honest about that shape,
field by field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

from apps.dashboard.metrics_api import GROUP
from apps.metrics.snapshot import Snapshot
from config.redis_layout import ROLES
from tests.support.contract import contract_errors
from workers import cache_families
from workers.queues import FAMILIES, QUEUE_NAMES

THRESHOLDS = {
    "queue_warn": 1000, "queue_critical": 10000, "memory_warn_percent": 90, "memory_critical_percent": 98,
    "evicted_keys_warn_min": 1, "evicted_keys_critical_min": 10, "rejected_connections_critical_min": 1,
    "queue_overrides": {},
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def queue_entry(family, depth: int = 0, status: str = "ok", reasons: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": family.queue, "lane": family.lane, "group": family.group, "depth": depth,
        "by_priority": {"0": depth, "3": 0, "6": 0, "9": 0},
        "oldest_age_seconds": 4.2 if depth else None, "consumers": 1, "processed_per_minute": 30.0,
        "processed_total": 1234, "warn": 1000, "critical": 10000, "status": status, "reasons": reasons or [],
    }


def redis_entry(role: str, port: int = 6379, db: int = 0, reachable: bool = True) -> dict[str, Any]:
    return {
        "role": role, "host": "127.0.0.1", "port": port, "db": db, "tls": False,
        "shared_with": [r for r in ROLES if r != role], "reachable": reachable,
        "error": None if reachable else "unreachable: Connection refused",
        "used_memory": 1_234_567, "maxmemory": 0, "memory_percent": 0.5, "no_maxmemory": True,
        "evicted_keys_delta": 0, "rejected_connections_delta": 0, "evicted_keys": 0, "rejected_connections": 0,
        "connected_clients": 7, "maxclients": 10000, "maxmemory_policy": "noeviction", "uptime_seconds": 1234,
        "persistence": {"save": "", "appendonly": False, "persistent": False},
        "run_id": "abc", "redis_version": "7.0.15", "last_restart_at": None, "status": "ok" if reachable else "critical", "reasons": [],
    }


def make_snapshot(depths: dict[str, int] | None = None, statuses: dict[str, str] | None = None,
                  events: list[dict] | None = None) -> dict[str, Any]:
    depths, statuses = depths or {}, statuses or {}
    snapshot = {
        "collected_at": now_iso(),
        "duration_ms": 3.2,
        "queues": [
            queue_entry(f, depths.get(f.queue, 0), statuses.get(f.queue, "ok"),
                        [f"depth {depths[f.queue]} >= warn 1000"] if f.queue in statuses else [])
            for f in FAMILIES
        ],
        "unacked": {"count": 3, "oldest_age_seconds": 12.0},
        "redis": [redis_entry(role, db=index) for index, role in enumerate(ROLES)],
        "workers": [{"name": "hot@host", "group": "hot", "host": "host", "pid": 123,
                     "queues": ["messagelog_read"], "last_heartbeat": now_iso(), "alive": True}],
        "thresholds": dict(THRESHOLDS),
        "events": events or [],
        "database": {"reachable": True, "error": None},
        "controller": {"host": "host", "pid": 4242, "leader": True, "interval": 5.0},
    }
    errors = contract_errors(snapshot, Snapshot)
    assert not errors, errors  # a hand-made snapshot is a contract-abiding one, or no test runs on it
    return snapshot


def publish(snapshot: dict[str, Any]) -> None:
    """Put ``snapshot`` where the controller would: the cache and the group."""
    cache.set(cache_families.key("metrics_snapshot", "latest"), snapshot,
              timeout=cache_families.timeout("metrics_snapshot"))
    async_to_sync(get_channel_layer().group_send)(GROUP, {"type": "metrics.snapshot", "snapshot": snapshot})


def test_a_made_snapshot_lists_every_declared_queue_and_role():
    snapshot = make_snapshot({"ai": 5})
    assert [q["name"] for q in snapshot["queues"]] == list(QUEUE_NAMES)
    assert [r["role"] for r in snapshot["redis"]] == list(ROLES)
    assert next(q for q in snapshot["queues"] if q["name"] == "ai")["depth"] == 5
