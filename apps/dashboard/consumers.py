"""/ws/superadmin/metrics/: the controller's snapshots, pushed to the page.

Thin on purpose: the controller publishes to the group once per tick; the
process's one group member (apps/dashboard/hub.py) receives it and hands the
pre-encoded frame to every consumer registered with it.  A consumer has no
channel of its own.  Message shapes are TypedDicts; one handler per type.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypedDict

import redis
from asgiref.sync import sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch

from apps.dashboard.hub import Hub, hub_for
from apps.dashboard.metrics_api import FRAME_HEAD, FRAME_TAIL, CacheUnavailable, is_superadmin, latest_snapshot_json

logger = logging.getLogger(__name__)

# Close codes the page understands (4000-4999 are for applications).
CLOSE_FORBIDDEN = 4403
CLOSE_CHANNELS_DOWN = 4503
# How long a socket closed for a channels error waits for the hub to leave the group.
LEAVE_TIMEOUT = 0.5


class LostEvent(TypedDict):
    """What the hub queues for its sockets when the channels Redis fails."""

    type: str  # "hub.lost"
    error: str  # the exception's class name


class ErrorFrame(TypedDict):
    type: str  # "error"
    error: str
    detail: str


class MetricsConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []  # the hub is the group member, not the socket
    hub: Hub | None = None  # registered with it: unregister on disconnect
    closed = False  # a close was sent already

    async def __call__(self, scope, receive, send) -> None:
        """Channels' consumer loop, without a channel of the layer: events
        come from the client and from the hub's queue (a channels failure).

        When the channels Redis goes away, one warning line and a close code
        suffice: the page polls and retries with backoff.
        """
        self.scope, self.base_send, self.channel_layer = scope, send, None
        self.events: asyncio.Queue[LostEvent] = asyncio.Queue()
        try:
            await await_many_dispatch([receive, self.events.get], self.dispatch)
        except StopConsumer:
            pass
        except (redis.RedisError, OSError) as exc:  # the join at connect failed
            await self._channels_down(type(exc).__name__)
        finally:
            if self.hub is not None:  # ended some other way: the hub must not keep a dead socket
                await self._leave_quickly()

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
        hub = hub_for(get_channel_layer())
        await hub.register(self)
        self.hub = hub
        await self._send_current()
        hub.release(self)  # newer frames follow the current one, never overtake it

    async def disconnect(self, code: int) -> None:
        hub, self.hub = self.hub, None
        if hub is not None:
            await hub.unregister(self)  # the last socket makes the hub leave the group

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that needs an answer; ignore it."""

    async def forward(self, frame: str) -> None:
        """The hub's delivery: the pre-encoded frame as it is, no JSON work per socket."""
        await self.send(text_data=frame)

    def channels_lost(self, error: str) -> None:
        """The hub lost the channels Redis (it has dropped this socket already)."""
        self.hub = None
        self.events.put_nowait(LostEvent(type="hub.lost", error=error))

    async def hub_lost(self, event: LostEvent) -> None:
        await self._channels_down(event["error"])
        raise StopConsumer

    async def _channels_down(self, error: str) -> None:
        logger.warning("metrics websocket closed: channels Redis unavailable (%s)", error)
        await self._leave_quickly()
        if not self.closed:
            try:
                await self.base_send({"type": "websocket.close", "code": CLOSE_CHANNELS_DOWN})
            except (OSError, RuntimeError):
                pass  # the client is already gone
            self.closed = True

    async def _leave_quickly(self) -> None:
        """A hung Redis must not delay the close (the entry then expires with group_expiry)."""
        try:
            await asyncio.wait_for(self.disconnect(CLOSE_CHANNELS_DOWN), LEAVE_TIMEOUT)
        except asyncio.TimeoutError:
            pass

    async def _send_current(self) -> None:
        try:
            body = await sync_to_async(latest_snapshot_json)()
        except CacheUnavailable as exc:
            await self.send_json(ErrorFrame(type="error", error="cache_unavailable", detail=str(exc)))
            return
        if body is not None:
            await self.send(text_data=FRAME_HEAD + body.decode() + FRAME_TAIL)
