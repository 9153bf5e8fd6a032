"""The anchor of bench/bench_fanout.py: bare channels-redis, no Django around it.

One consumer per socket joins a group and forwards each pre-encoded frame
as it is: channels-redis' own way of fanning out, ``group_send`` to one
channel per socket plus one pre-encoded send per socket, the yardstick the
fan-out target is stated against.  (Flowwatch's web process is one group
member however many sockets it holds, apps/dashboard/hub.py.)  Served
by the same uvicorn flags as Flowwatch (``uvicorn bench.fanout_anchor:application``).
Its layer is channels-redis' core layer with the waiting pool Flowwatch uses
(workers/channels_layer.py): with channels-redis' own pool, 1000 sockets
joining at once fail with ``MaxConnectionsError`` before any fan-out.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        CHANNEL_LAYERS={"default": {"BACKEND": "workers.channels_layer.FlowwatchChannelLayer",
                                    "CONFIG": {"hosts": [{"address": os.environ["BENCH_CHANNELS_URL"],
                                                          "socket_timeout": 10}],
                                               "prefix": "fw-channels"}}},
        INSTALLED_APPS=["channels"],
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "superadmin_metrics"  # the group and message type Flowwatch's publisher uses


class Forward(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def metrics_snapshot(self, event: dict) -> None:
        await self.send(text_data=event["frame"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/superadmin/metrics/", Forward.as_asgi())])})
