"""The per-minute history the charts read: one row per queue and per Redis role and minute.

Pruned by the ``prune_history`` task (apps/metrics/tasks.py).
"""

from __future__ import annotations

from datetime import datetime

from apps.metrics.models import QueueSample, RedisSample
from apps.metrics.snapshot import Snapshot


def roll_up(minute: datetime, snapshot: Snapshot) -> None:
    """Upsert ``minute``'s row per queue (its highest depth so far) and per role (its last memory)."""
    queue_rows = [QueueSample(minute=minute, queue=q["name"], depth=q["depth"],
                              oldest_age_seconds=q["oldest_age_seconds"],
                              processed_per_minute=q["processed_per_minute"])
                  for q in snapshot["queues"] if q["depth"] is not None]
    existing = dict(QueueSample.objects.filter(minute=minute).values_list("queue", "depth"))
    for row in queue_rows:
        row.depth = max(row.depth, existing.get(row.queue, 0))
    QueueSample.objects.bulk_create(queue_rows, update_conflicts=True, unique_fields=["minute", "queue"],
                                    update_fields=["depth", "oldest_age_seconds", "processed_per_minute"])
    redis_rows = [RedisSample(minute=minute, role=r["role"], reachable=r["reachable"],
                              memory_percent=r["memory_percent"], used_memory=r["used_memory"])
                  for r in snapshot["redis"]]
    RedisSample.objects.bulk_create(redis_rows, update_conflicts=True, unique_fields=["minute", "role"],
                                    update_fields=["reachable", "memory_percent", "used_memory"])
