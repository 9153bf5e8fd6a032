"""The controller's snapshot: its shape, where it goes, and how readers get it.

The shape is the contract of docs/metrics.md ("The snapshot"); the
TypedDicts below spell it for the code.

The snapshot is serialised to JSON once per tick (:func:`encode`) and goes,
as those bytes, to

* the cache: key ``metrics_snapshot:latest`` of the ``metrics_snapshot`` family
  (its timeout: a snapshot older than that means no controller is running);
  ``/api/metrics/`` answers the cached bytes as they are;
* the Channels group :data:`GROUP` as ``{"type": "metrics.snapshot",
  "frame": <the websocket frame's text>}``, through one long-lived event loop
  (:class:`GroupPublisher`); consumers forward the frame without decoding it.

Readers call :func:`latest_snapshot_json` (bytes) or :func:`latest_snapshot`
(the parsed dict, for the page and Prometheus).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, TypedDict, Union

import redis
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder

from workers import cache_families

logger = logging.getLogger("flowwatch.metrics")

GROUP = "superadmin_metrics"
MESSAGE_TYPE = "metrics.snapshot"
CACHE_KEY = cache_families.key("metrics_snapshot", "latest")
# A channel layer that hangs (a black-holed host) must not stall the loop.
GROUP_SEND_TIMEOUT = 2.0
# The websocket frame is {"type": "snapshot", "snapshot": <snapshot>}, spelt
# as json.dumps spells that dict, around the snapshot's own JSON.
FRAME_HEAD = '{"type": "snapshot", "snapshot": '
FRAME_TAIL = "}"


class QueueEntry(TypedDict):
    name: str
    lane: str | None
    group: str | None
    depth: int | None  # None while the broker is unreachable
    by_priority: dict[str, int]
    oldest_age_seconds: float | None
    consumers: int
    processed_per_minute: float | None
    processed_total: int | None
    warn: int
    critical: int
    status: str
    reasons: list[str]


class Persistence(TypedDict):
    save: str | None
    appendonly: bool
    persistent: bool


class RedisEntry(TypedDict):
    role: str
    host: str
    port: int
    db: int
    tls: bool
    shared_with: list[str]
    reachable: bool
    error: str | None
    used_memory: int | None
    maxmemory: int | None
    memory_percent: float | None
    no_maxmemory: bool | None
    evicted_keys_delta: int | None
    rejected_connections_delta: int | None
    evicted_keys: int | None  # Redis' own counters since its start (Prometheus' _total)
    rejected_connections: int | None
    connected_clients: int | None
    maxclients: int | None
    maxmemory_policy: str | None
    uptime_seconds: int | None
    persistence: Persistence | None
    run_id: str | None
    redis_version: str | None
    last_restart_at: str | None
    status: str
    reasons: list[str]


class WorkerEntry(TypedDict):
    name: str
    group: str | None
    host: str | None
    pid: int | None
    queues: list[str]
    last_heartbeat: str | None
    alive: bool


class Unacked(TypedDict):
    count: int | None
    oldest_age_seconds: float | None


class Change(TypedDict):
    """A status change, restart, unreachable or recovered role: a MetricEvent to be."""

    kind: str
    subject: str
    old_status: str
    new_status: str
    message: str
    details: dict[str, Any]


class EventEntry(Change):
    id: int | None  # None while the database is away: it is not saved yet
    at: str | None


class DatabaseStatus(TypedDict):
    reachable: bool
    error: str | None


class ControllerInfo(TypedDict):
    host: str
    pid: int
    leader: bool
    interval: float


class Snapshot(TypedDict):
    collected_at: str | None
    duration_ms: float
    queues: list[QueueEntry]
    unacked: Unacked
    redis: list[RedisEntry]
    workers: list[WorkerEntry]
    thresholds: dict[str, Any]
    events: list[EventEntry]
    database: DatabaseStatus
    controller: ControllerInfo


class CacheUnavailable(RuntimeError):
    """The cache Redis did not answer."""


@dataclass(frozen=True)
class EncodedSnapshot:
    """A snapshot serialised once: ``body`` is exactly what ``/api/metrics/`` answers."""

    body: bytes

    @property
    def frame(self) -> str:
        """The websocket frame's text, the same JSON the consumer's send_json made."""
        return FRAME_HEAD + self.body.decode() + FRAME_TAIL


SnapshotLike = Union[Snapshot, dict, EncodedSnapshot]


def encode(snapshot: SnapshotLike) -> EncodedSnapshot:
    """The snapshot's JSON, as Django's JsonResponse spells it (same encoder, same separators)."""
    if isinstance(snapshot, EncodedSnapshot):
        return snapshot
    return EncodedSnapshot(json.dumps(snapshot, cls=DjangoJSONEncoder).encode())


def latest_snapshot_json() -> bytes | None:
    """The latest snapshot's JSON bytes, None when none is cached; CacheUnavailable when the cache is down."""
    try:
        cached = cache.get(CACHE_KEY)
    except Exception as exc:  # django-redis wraps Redis errors in its own types
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None
    if cached is None or isinstance(cached, bytes):
        return cached
    return encode(cached).body  # a dict cached by an older controller during an upgrade


def latest_snapshot() -> Snapshot | None:
    """The latest snapshot, None when none is cached; CacheUnavailable when the cache is down."""
    body = latest_snapshot_json()
    return None if body is None else json.loads(body)


def publish_to_cache(snapshot: SnapshotLike) -> None:
    """Raises CacheUnavailable when the cache Redis is down."""
    body = encode(snapshot).body
    try:
        cache.set(CACHE_KEY, body, timeout=cache_families.timeout("metrics_snapshot"))
    except Exception as exc:
        raise CacheUnavailable(f"cache unavailable: {type(exc).__name__}") from None


class GroupPublisher:
    """Sends snapshots to :data:`GROUP` from one event loop that lives in its own thread.

    channels-redis keeps its connection pools per event loop. ``async_to_sync``
    runs every call in a new loop, so publishing through it would open a new
    connection (and, on a managed Redis, a TLS handshake) every tick. Here the loop, and
    with it the layer's pooled connection, lasts until :meth:`close`; redis-py
    reconnects that connection by itself after the channels Redis restarts.
    The loop starts at the first send and again after a close.
    """

    def __init__(self, timeout: float = GROUP_SEND_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def send(self, snapshot: SnapshotLike) -> None:
        """Raises on a dead or hanging channel layer (within ``timeout``).

        A connection that a restart of the channels Redis broke is replaced
        and the snapshot sent again before the tick gives up on it.
        """
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": MESSAGE_TYPE, "frame": encode(snapshot).frame}
        try:
            self._send_once(layer, message)
        except (redis.ConnectionError, ConnectionError) as exc:
            logger.info("channels publish failed (%s); reconnecting and sending again", type(exc).__name__)
            self._send_once(layer, message)

    def _send_once(self, layer: Any, message: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(layer.group_send(GROUP, message), self.timeout), self._running_loop())
        try:
            future.result(self.timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and close the layer's connections made from it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout + 1.0)
        if thread.is_alive():  # a send stuck past every timeout: leave the daemon thread be
            logger.warning("the channels publisher's loop did not stop")
            return
        # channels-redis wraps loop.close() to close the pools it made for this loop.
        loop.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="fw-channels-publisher", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


# One per process: the controller publishes through it and closes it when it stops.
group_publisher = GroupPublisher()


def publish_to_group(snapshot: SnapshotLike) -> None:
    """Send the snapshot to the metrics page's group; raises on a dead channel layer."""
    group_publisher.send(snapshot)


def close_group_publisher() -> None:
    group_publisher.close()
