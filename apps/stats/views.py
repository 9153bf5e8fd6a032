"""/api/stats/: message statistics from the cache, never from the database on the request path."""

from __future__ import annotations

import logging
import threading

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.metrics.auth import metrics_access
from apps.stats import cache as stats_cache

logger = logging.getLogger("flowwatch.stats")

# The answer must leave within 2 s even when the broker hangs too.
QUEUE_WAIT = 1.0
MISSING = "No cached statistics found: a rebuild is queued, try again in a few seconds."
UNAVAILABLE = ("No cached statistics found: the cache Redis does not answer. "
               "The statistics are rebuilt once it is back.")


def queue_rebuild() -> None:
    """Send a rebuild, waiting at most QUEUE_WAIT for the broker."""
    from apps.stats.tasks import rebuild_stats

    def send() -> None:
        try:
            rebuild_stats.apply_async(retry=False)
        except Exception as exc:  # the broker may be down with the cache
            logger.warning("stats rebuild not queued: %s", type(exc).__name__)

    thread = threading.Thread(target=send, name="fw-stats-rebuild", daemon=True)
    thread.start()
    thread.join(QUEUE_WAIT)


@require_GET
@never_cache
@metrics_access
def api_stats(request: HttpRequest) -> HttpResponse:
    try:
        stats = stats_cache.cached()
    except stats_cache.CacheUnavailable:
        queue_rebuild()
        return JsonResponse({"error": "cache_unavailable", "detail": UNAVAILABLE}, status=503)
    if stats is None:
        queue_rebuild()
        return JsonResponse({"error": "cache_miss", "detail": MISSING}, status=503)
    return JsonResponse(stats)
