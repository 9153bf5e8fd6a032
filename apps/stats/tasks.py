"""``rebuild_stats`` (queue ``stats_cache``): refill the message statistics cache."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from apps.stats import cache as stats_cache
from workers.routing import routed_task


@routed_task("stats_cache", name="apps.stats.tasks.rebuild_stats",
             autoretry_for=(OperationalError, InterfaceError, stats_cache.CacheUnavailable),
             retry_backoff=True, retry_backoff_max=300, retry_jitter=True, max_retries=5)
def rebuild_stats() -> dict:
    stats = stats_cache.rebuild()
    return {"tenants": len(stats["tenants"])}
