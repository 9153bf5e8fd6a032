"""One member of the metrics group per event loop: the sockets of a web process share it.

channels-redis' core layer delivers a group message as one copy per member
channel.  With every metrics websocket its own member, each controller tick
pushed one 18.5 KB copy per socket into Redis and the web process popped and
decoded them one by one (docs/performance.md, "Fan-out").  Here the process
is ONE member: the :class:`Hub` owns one channel of the layer, joins
:data:`GROUP` with the first socket, receives each snapshot once and hands
the pre-encoded frame to every registered socket in memory; it leaves the
group when the last socket goes.

Sending is per socket and concurrent (:class:`Outbox`): a socket that is
slow or already closed delays and breaks no other.  A socket whose previous
frame is still on its way keeps only the newest one waiting: the page shows
the latest snapshot, and a stalled client cannot pile frames up.

When the channels Redis goes away or stops answering, the receive loop fails
(within the layer's read timeout, config/redis_layout.py) and every
registered socket is told through :meth:`Member.channels_lost`; the hub is
then done, and the next socket starts a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, Protocol, TypedDict

import redis

from apps.dashboard.metrics_api import GROUP, MESSAGE_TYPE
from config.redis_layout import CHANNELS_GROUP_REFRESH

logger = logging.getLogger(__name__)

# How long a failed hub tries to leave the group (Redis may be hung); the
# entry otherwise expires with the layer's group_expiry.
LEAVE_TIMEOUT = 0.5
CHANNELS_ERRORS = (redis.RedisError, OSError)


class SnapshotEvent(TypedDict, total=False):
    """What the controller sends to the group (contract: type metrics.snapshot):
    ``frame``, the websocket frame's text, encoded once for every socket.
    A bare ``snapshot`` dict is still understood (encoded here, once)."""

    type: str
    frame: str
    snapshot: dict[str, Any]


class SnapshotFrame(TypedDict):
    """What the page receives: {"type": "snapshot", "snapshot": {...}}."""

    type: str
    snapshot: dict[str, Any]


class Member(Protocol):
    """What a socket gives the hub (apps/dashboard/consumers.py)."""

    async def forward(self, frame: str) -> None: ...

    def channels_lost(self, error: str) -> None: ...


class Outbox:
    """One socket's way out: at most one frame sending, at most one waiting (the newest)."""

    __slots__ = ("member", "waiting", "task", "held", "dead")

    def __init__(self, member: Member) -> None:
        self.member = member
        self.waiting: str | None = None
        self.task: asyncio.Task | None = None
        self.held = True  # until the socket has sent its current snapshot: no newer frame overtakes it
        self.dead = False

    def put(self, frame: str) -> None:
        if self.dead:
            return
        self.waiting = frame
        if self.task is None and not self.held:
            self.task = asyncio.ensure_future(self._drain())

    def release(self) -> None:
        self.held = False
        if self.waiting is not None and self.task is None and not self.dead:
            self.task = asyncio.ensure_future(self._drain())

    def close(self) -> None:
        self.dead, self.waiting = True, None
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def _drain(self) -> None:
        try:
            while self.waiting is not None:
                frame, self.waiting = self.waiting, None
                await self.member.forward(frame)
        except Exception as exc:  # the client went away: its own disconnect unregisters it
            self.dead, self.waiting = True, None
            logger.debug("metrics frame not sent: %s", type(exc).__name__)
        finally:
            self.task = None


def frame_of(message: SnapshotEvent) -> str | None:
    """The frame's text; a bare ``snapshot`` dict (an older publisher) is
    encoded here, once.  None for anything else, which is skipped."""
    if message.get("type") != MESSAGE_TYPE:
        return None
    if "frame" in message:
        return message["frame"]
    if "snapshot" in message:
        return json.dumps(SnapshotFrame(type="snapshot", snapshot=message["snapshot"]))
    logger.warning("metrics hub: a %s message without a frame or a snapshot was skipped", MESSAGE_TYPE)
    return None


class Hub:
    """The metrics group's one member on this event loop, for the layer ``layer``."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.outboxes: dict[Member, Outbox] = {}
        self.channel_name: str | None = None
        self.joining: asyncio.Task | None = None
        self.receiving: asyncio.Task | None = None
        self.renewing: asyncio.Task | None = None
        self.joined = False  # in GROUP: leave it on stop
        self.joined_at = 0.0
        self.done = False  # stopped or failed: the registry makes a new hub

    async def register(self, member: Member) -> None:
        """Add a socket; the first one joins the group.  Raises the channels
        error when the join fails (the caller closes its socket with 4503)."""
        self.outboxes[member] = Outbox(member)
        if self.joining is None:
            self.joining = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self.joining)
        except BaseException:  # the join failed, or this socket's task was cancelled during it
            self.outboxes.pop(member, None)
            if not self.outboxes and not self.done:
                asyncio.ensure_future(self._stop())  # a join still under way leaves again (_start)
            raise

    def release(self, member: Member) -> None:
        """The socket has sent its current snapshot: newer frames may follow."""
        outbox = self.outboxes.get(member)
        if outbox is not None:
            outbox.release()

    async def unregister(self, member: Member) -> None:
        """Remove a socket; the last one leaves the group."""
        outbox = self.outboxes.pop(member, None)
        if outbox is not None:
            outbox.close()
        if not self.outboxes and not self.done:
            await self._stop()

    async def _start(self) -> None:
        self.channel_name = await self.layer.new_channel()
        try:
            await self._join()
        except BaseException:
            self._retire()
            raise
        if self.done:  # every socket went while it joined
            await self._leave(None)
            return
        self.receiving = asyncio.ensure_future(self._receive())
        self.renewing = asyncio.ensure_future(self._renew())

    async def _join(self) -> None:
        """Join (or join again): channels-redis drops a member ``group_expiry`` after it joined."""
        await self.layer.group_add(GROUP, self.channel_name)
        self.joined, self.joined_at = True, time.monotonic()

    async def _receive(self) -> None:
        try:
            while True:
                message = await self.layer.receive(self.channel_name)
                frame = frame_of(message)
                if frame is not None:
                    self.deliver(frame)
        except asyncio.CancelledError:
            raise
        except CHANNELS_ERRORS as exc:
            logger.info("metrics hub stopped: channels Redis unavailable (%s)", type(exc).__name__)
            await self._fail(type(exc).__name__)
        except Exception as exc:  # not Redis: a bug, shown once with its traceback
            logger.exception("metrics hub stopped")
            await self._fail(type(exc).__name__)

    async def _renew(self) -> None:
        """Join again every CHANNELS_GROUP_REFRESH seconds, snapshots or not:
        while the controller is stopped nothing arrives, and a membership left
        to expire would keep the snapshots after its return from open pages."""
        while True:
            await asyncio.sleep(max(0.0, self.joined_at + CHANNELS_GROUP_REFRESH - time.monotonic()))
            try:
                await self._join()
            except CHANNELS_ERRORS as exc:  # the receive loop notices an outage and ends the hub
                logger.info("metrics hub could not renew its membership (%s)", type(exc).__name__)
                await asyncio.sleep(CHANNELS_GROUP_REFRESH)

    def deliver(self, frame: str) -> None:
        """Hand ``frame`` to every registered socket; each sends on its own."""
        for outbox in list(self.outboxes.values()):
            outbox.put(frame)

    async def _fail(self, error: str) -> None:
        """Tell every socket, then leave the group if Redis lets us at once."""
        self._retire()
        members, self.outboxes = list(self.outboxes), {}
        for member in members:
            member.channels_lost(error)
        await self._leave(LEAVE_TIMEOUT)

    async def _stop(self) -> None:
        self._retire()
        if self.receiving is not None and self.receiving is not asyncio.current_task():
            self.receiving.cancel()
        if self.joined:
            await self._leave(None)

    async def _leave(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self.layer.group_discard(GROUP, self.channel_name), timeout)
        except (asyncio.TimeoutError, *CHANNELS_ERRORS):
            pass  # the entry expires by itself (the layer's group_expiry)

    def _retire(self) -> None:
        self.done = True
        if self.renewing is not None and self.renewing is not asyncio.current_task():
            self.renewing.cancel()
        loop = asyncio.get_running_loop()
        if _hubs.get(loop) is self:
            del _hubs[loop]


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub_for(layer: Any) -> Hub:
    """This event loop's hub for ``layer``: a new one after the last stopped or
    failed, or when the layer changed (tests swap CHANNEL_LAYERS)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.done or hub.layer is not layer:
        hub = _hubs[loop] = Hub(layer)
    return hub
