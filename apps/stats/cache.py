"""Message statistics in the ``stats`` cache family: counts per tenant, iFlow, hour and status.

One entry, ``stats:messages``, rebuilt from the database by the ``stats_cache``
queue: after stored pages (at most one rebuild per STATS_REBUILD_DELAY
seconds), by the registered ``message_stats`` rebuilder that
``rebuild_caches`` runs after a Redis restart and every 15 minutes, and when
/api/stats/ finds the entry missing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Substr, TruncHour
from django.utils import timezone

from apps.messagelogs.models import MessageLog
from apps.tenants.models import Tenant
from workers import cache_families
from workers.rebuild import rebuilder

logger = logging.getLogger("flowwatch.stats")

CACHE_KEY = cache_families.key("stats", "messages")
PENDING_KEY = cache_families.key("stats", "rebuild_pending")


class CacheUnavailable(RuntimeError):
    """The cache Redis did not answer."""


def hour_of_log_end():
    """The hour of LogEnd as the database computes it fastest.

    On SQLite Django's TruncHour calls a Python function per row; a datetime
    is stored there as UTC text ``YYYY-MM-DD HH:MM:SS…``, so its first 13
    characters are the hour, computed in SQL.
    """
    if connection.vendor == "sqlite":
        return Substr("log_end", 1, 13)
    return TruncHour("log_end")


def as_hour(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=dt_timezone.utc)
    return value


def build(now=None) -> dict[str, Any]:
    """The statistics of the last STATS_HOURS hours, from the database."""
    now = now or timezone.now()
    since = (now - timedelta(hours=settings.STATS_HOURS)).replace(minute=0, second=0, microsecond=0)
    rows = (MessageLog.objects.filter(log_end__gte=since)
            .annotate(hour=hour_of_log_end())
            .values_list("tenant_id", "iflow_name", "hour", "status")
            .annotate(n=Count("id")).order_by("tenant_id", "iflow_name", "hour", "status"))
    names = dict(Tenant.objects.values_list("id", "name"))
    tenants: dict[int, dict[str, Any]] = {}
    for tenant_id, iflow, hour, status, count in rows:
        entry = tenants.setdefault(tenant_id, {"id": tenant_id, "name": names.get(tenant_id, ""),
                                               "statuses": {}, "counts": []})
        entry["statuses"][status] = entry["statuses"].get(status, 0) + count
        entry["counts"].append({"iflow": iflow, "hour": as_hour(hour).isoformat(), "status": status,
                                "count": count})
    return {"generated_at": now.isoformat(), "since": since.isoformat(), "hours": settings.STATS_HOURS,
            "tenants": list(tenants.values())}


@rebuilder("message_stats")
def rebuild() -> dict[str, Any]:
    """Build the statistics and store them; raises CacheUnavailable when the cache is down."""
    stats = build()
    try:
        cache.set(CACHE_KEY, stats, timeout=cache_families.timeout("stats"))
    except Exception as exc:  # django-redis wraps Redis errors in its own types
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None
    return stats


def cached() -> dict[str, Any] | None:
    """The cached statistics, None when missing; CacheUnavailable when the cache is down."""
    try:
        return cache.get(CACHE_KEY)
    except Exception as exc:
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None


def request_rebuild() -> bool:
    """Queue one rebuild for the next STATS_REBUILD_DELAY seconds of changes; True when queued."""
    from apps.stats.tasks import rebuild_stats

    delay = settings.STATS_REBUILD_DELAY
    try:
        if not cache.add(PENDING_KEY, 1, timeout=delay):
            return False  # one is queued already and will see these changes
    except Exception:
        logger.warning("stats rebuild not queued: the cache Redis does not answer")
        return False
    rebuild_stats.apply_async(countdown=delay)
    return True
