"""Where the controller's snapshot goes, and how readers get it (contract/CONTRACT.md).

* the cache: key ``metrics_snapshot:latest`` of the ``metrics_snapshot`` family
  (its timeout: a snapshot older than that means no controller is running);
* the Channels group :data:`GROUP` as ``{"type": "metrics.snapshot",
  "snapshot": <dict>}``;
* readers call :func:`latest_snapshot`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.core.cache import cache

from workers import cache_families

logger = logging.getLogger("flowwatch.metrics")

GROUP = "superadmin_metrics"
MESSAGE_TYPE = "metrics.snapshot"
CACHE_KEY = cache_families.key("metrics_snapshot", "latest")
# A channel layer that hangs (a black-holed host) must not stall the loop.
GROUP_SEND_TIMEOUT = 2.0


class CacheUnavailable(RuntimeError):
    """The cache Redis did not answer."""


def latest_snapshot() -> dict[str, Any] | None:
    """The latest snapshot, None when none is cached; CacheUnavailable when the cache is down."""
    try:
        return cache.get(CACHE_KEY)
    except Exception as exc:  # django-redis wraps Redis errors in its own types
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None


def publish_to_cache(snapshot: dict[str, Any]) -> None:
    """Raises CacheUnavailable when the cache Redis is down."""
    try:
        cache.set(CACHE_KEY, snapshot, timeout=cache_families.timeout("metrics_snapshot"))
    except Exception as exc:
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None


def publish_to_group(snapshot: dict[str, Any]) -> None:
    """Send the snapshot to the metrics page's group; raises on a dead channel layer."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return

    async def send() -> None:
        await asyncio.wait_for(layer.group_send(GROUP, {"type": MESSAGE_TYPE, "snapshot": snapshot}),
                               GROUP_SEND_TIMEOUT)

    async_to_sync(send)()
