"""/ws/superadmin/metrics/: the controller's snapshots, pushed to the page.

Thin on purpose: the controller publishes to the group, this
consumer forwards.  Message shapes are TypedDicts; one handler per type.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, TypedDict

import redis
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.dashboard.metrics_api import (FRAME_HEAD, FRAME_TAIL, GROUP, CacheUnavailable, is_superadmin,
                                        latest_snapshot_json)
from config.redis_layout import CHANNELS_GROUP_REFRESH

logger = logging.getLogger(__name__)

# Close codes the page understands (4000-4999 are for applications).
CLOSE_FORBIDDEN = 4403
CLOSE_CHANNELS_DOWN = 4503
# How long a socket closed for a channels error tries to leave the group.
LEAVE_TIMEOUT = 0.5


class SnapshotEvent(TypedDict, total=False):
    """What the controller sends to the group (contract: type metrics.snapshot):
    ``frame``, the websocket frame's text, encoded once for every socket.
    A bare ``snapshot`` dict is still understood (and encoded here)."""

    type: str
    frame: str
    snapshot: dict[str, Any]


class SnapshotFrame(TypedDict):
    """What the page receives: {"type": "snapshot", "snapshot": {...}}."""

    type: str
    snapshot: dict[str, Any]


class ErrorFrame(TypedDict):
    type: str  # "error"
    error: str
    detail: str


class MetricsConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []  # joined by hand in connect(), after the permission check
    joined = False  # in GROUP: leave it on disconnect
    joined_at = 0.0  # time.monotonic() of the last group_add
    closed = False  # a close was sent already

    async def __call__(self, scope, receive, send) -> None:
        """End quietly when the channels Redis goes away mid-connection.

        channels-redis raises from the consumer's receive loop; left alone,
        that is a traceback per open page per retry.  The page polls and
        retries with backoff, so one warning line and a close code suffice.
        """
        try:
            await super().__call__(scope, receive, send)
        except (redis.RedisError, OSError) as exc:
            logger.warning("metrics websocket closed: channels Redis unavailable (%s)", type(exc).__name__)
            await self._leave_quickly()
            if not self.closed:
                try:
                    await send({"type": "websocket.close", "code": CLOSE_CHANNELS_DOWN})
                except (OSError, RuntimeError):
                    pass  # the client is already gone

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def connect(self) -> None:
        # Accept first, then close with 4403: a rejected handshake reaches a
        # browser as an anonymous 1006, a close code says why.
        await self.accept()
        if not is_superadmin(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # A dead channels Redis raises here; __call__ closes with 4503 and the
        # page polls /api/metrics/ while it retries with backoff.
        await self._join()
        await self._send_current()

    async def _join(self) -> None:
        """Join (or join again) the group: channels-redis drops members
        ``group_expiry`` after they joined, so a live socket renews its entry."""
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined, self.joined_at = True, time.monotonic()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            try:
                await self.channel_layer.group_discard(GROUP, self.channel_name)
            except (redis.RedisError, OSError):
                pass  # the group entry expires by itself (channels-redis group_expiry, an hour)
            self.joined = False

    async def _leave_quickly(self) -> None:
        """Leave the group when Redis lets us at once; a hung Redis must not
        delay the close (the entry then expires with group_expiry)."""
        try:
            await asyncio.wait_for(self.disconnect(CLOSE_CHANNELS_DOWN), LEAVE_TIMEOUT)
        except asyncio.TimeoutError:
            pass

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that needs an answer; ignore it."""

    async def metrics_snapshot(self, event: SnapshotEvent) -> None:
        """Forward the pre-encoded frame as it is: no JSON work per socket."""
        frame = event.get("frame")
        if frame is None:
            frame = json.dumps(SnapshotFrame(type="snapshot", snapshot=event["snapshot"]))
        await self.send(text_data=frame)
        if time.monotonic() - self.joined_at > CHANNELS_GROUP_REFRESH:
            await self._join()

    async def _send_current(self) -> None:
        try:
            body = await sync_to_async(latest_snapshot_json)()
        except CacheUnavailable as exc:
            await self.send_json(ErrorFrame(type="error", error="cache_unavailable", detail=str(exc)))
            return
        if body is not None:
            await self.send(text_data=FRAME_HEAD + body.decode() + FRAME_TAIL)
