"""/api/metrics/, /api/metrics/history/ and /metrics (docs/metrics.md, "Endpoints")."""

from __future__ import annotations

import time
from datetime import timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.metrics import prometheus
from apps.metrics.auth import metrics_access
from apps.metrics.models import QueueSample, RedisSample
from apps.metrics.snapshot import CacheUnavailable, latest_snapshot, latest_snapshot_json
from config.http import runs_on_event_loop_when

HISTORY_MAX_MINUTES = 7 * 24 * 60
NO_SNAPSHOT_DETAIL = "No cached snapshot found: is manage.py run_controller running?"


CACHE_DOWN_DETAIL = "The cache Redis does not answer; no snapshot can be read."

# How long this process answers /api/metrics/ from the bytes it last read from
# the cache: a tenth of the default controller interval (5 s), half of the
# shortest (1 s), so a reader never misses a tick; an answer is at most this
# much older than the cache's.  Only a good read is kept: a missing snapshot or
# a dead cache is asked again every request (docs/performance.md, "Web").
SNAPSHOT_MEMO_SECONDS = 0.5


class SnapshotMemo:
    """The cached snapshot's bytes, kept in the process for SNAPSHOT_MEMO_SECONDS."""

    def __init__(self, seconds: float = SNAPSHOT_MEMO_SECONDS) -> None:
        self.seconds = seconds
        # (read at, body), replaced whole.  No lock: when it runs out, the few
        # threads that read the cache at once each wait for their own read, as
        # before, and none waits behind another's timeout.
        self._entry: tuple[float, bytes] | None = None

    def fresh(self) -> bytes | None:
        """The kept bytes while they are fresh, else None; never reads the cache."""
        entry = self._entry
        if entry is not None and time.monotonic() - entry[0] < self.seconds:
            return entry[1]
        return None

    def body(self) -> bytes | None:
        """Raises CacheUnavailable as latest_snapshot_json does."""
        kept = self.fresh()
        if kept is not None:
            return kept
        read_at = time.monotonic()
        body = latest_snapshot_json()
        self._entry = None if body is None else (read_at, body)
        return body

    def clear(self) -> None:
        self._entry = None


snapshot_memo = SnapshotMemo()

# Where _answered_from_memory leaves the bytes it found for the view.
MEMO_SCOPE_KEY = "flowwatch.snapshot"


def _answered_from_memory(scope: dict) -> bool:
    """A bearer-token request while this process keeps fresh snapshot bytes.

    Its whole answer reads no database and no cache (the token is compared
    with the setting, the bytes are in memory), so it runs on the event loop
    (config/http.py).  The bytes go into the scope, so the view answers these
    very bytes even if they run out meanwhile.  A session (a database read)
    or a stale memo (a cache read) runs in a thread as before.
    """
    if not any(name == b"authorization" and value[:7].lower() == b"bearer "
               for name, value in scope.get("headers", ())):
        return False
    body = snapshot_memo.fresh()
    if body is None:
        return False
    scope[MEMO_SCOPE_KEY] = body
    return True


def _unavailable(error: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail}, status=503)


def _snapshot_or_error() -> tuple[dict | None, JsonResponse | None]:
    try:
        snapshot = latest_snapshot()
    except CacheUnavailable:
        return None, _unavailable("cache_unavailable", CACHE_DOWN_DETAIL)
    if snapshot is None:
        # A cache-backed read without its cached value is cache_unavailable, like a dead cache.
        return None, _unavailable("cache_unavailable", NO_SNAPSHOT_DETAIL)
    return snapshot, None


@runs_on_event_loop_when(_answered_from_memory)
@require_GET
@never_cache
@metrics_access
def api_metrics(request: HttpRequest) -> HttpResponse:
    """The cached bytes as they are: the controller serialised them once."""
    kept = getattr(request, "scope", {}).get(MEMO_SCOPE_KEY)
    if kept is not None:
        return HttpResponse(kept, content_type="application/json")
    try:
        body = snapshot_memo.body()
    except CacheUnavailable:
        return _unavailable("cache_unavailable", CACHE_DOWN_DETAIL)
    if body is None:
        return _unavailable("cache_unavailable", NO_SNAPSHOT_DETAIL)
    return HttpResponse(body, content_type="application/json")


@require_GET
@never_cache
@metrics_access
def api_metrics_history(request: HttpRequest) -> HttpResponse:
    raw = request.GET.get("minutes", "60")
    try:
        minutes = int(raw)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= HISTORY_MAX_MINUTES:
        return JsonResponse({"error": "invalid_parameter", "parameter": "minutes",
                             "detail": f"minutes must be a whole number from 1 to {HISTORY_MAX_MINUTES}"},
                            status=400)
    since = timezone.now() - timedelta(minutes=minutes)
    queues: dict[str, list[list[float]]] = {}
    for minute, queue, depth in (QueueSample.objects.filter(minute__gte=since)
                                 .order_by("minute").values_list("minute", "queue", "depth")):
        queues.setdefault(queue, []).append([_epoch_ms(minute), depth])
    redis: dict[str, list[list[float | None]]] = {}
    for minute, role, percent in (RedisSample.objects.filter(minute__gte=since)
                                  .order_by("minute").values_list("minute", "role", "memory_percent")):
        redis.setdefault(role, []).append([_epoch_ms(minute), percent])
    return JsonResponse({"minutes": minutes, "queues": queues, "redis": redis})


def _epoch_ms(moment) -> int:
    return int(moment.timestamp() * 1000)


@require_GET
@never_cache
@metrics_access
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    snapshot, error = _snapshot_or_error()
    if error is not None:
        return error
    body, content_type = prometheus.render(snapshot, now=time.time(), counts=prometheus.read_counts())
    return HttpResponse(body, content_type=content_type)
