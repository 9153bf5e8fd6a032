"""Where the controller's snapshot goes, and how readers get it.

The snapshot's shape is described in docs/metrics.md ("The snapshot").

* the cache: key ``metrics_snapshot:latest`` of the ``metrics_snapshot`` family
  (its timeout: a snapshot older than that means no controller is running);
* the Channels group :data:`GROUP` as ``{"type": "metrics.snapshot",
  "snapshot": <dict>}``, through one long-lived event loop
  (:class:`GroupPublisher`);
* readers call :func:`latest_snapshot`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

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


class GroupPublisher:
    """Sends snapshots to :data:`GROUP` from one event loop that lives in its own thread.

    channels-redis keeps its connection pools per event loop. ``async_to_sync``
    runs every call in a new loop, so each publish opened a new connection
    (and, on a managed Redis, a TLS handshake every tick). Here the loop, and
    with it the layer's pooled connection, lasts until :meth:`close`; redis-py
    reconnects that connection by itself after the channels Redis restarts.
    The loop starts at the first send and again after a close.
    """

    def __init__(self, timeout: float = GROUP_SEND_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def send(self, snapshot: dict[str, Any]) -> None:
        """Raises on a dead or hanging channel layer (within ``timeout``)."""
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": MESSAGE_TYPE, "snapshot": snapshot}
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


def publish_to_group(snapshot: dict[str, Any]) -> None:
    """Send the snapshot to the metrics page's group; raises on a dead channel layer."""
    group_publisher.send(snapshot)


def close_group_publisher() -> None:
    group_publisher.close()
