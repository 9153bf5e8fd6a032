"""/ws/superadmin/metrics/ with the real ASGI app and the real channels-redis layer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.test import Client

from config.asgi import application
from apps.dashboard.metrics_api import GROUP
from config.redis_layout import CHANNELS_GROUP_REFRESH, CHANNELS_PREFIX, channel_layers, resolve
from tests.redis_plugin import suite_server
from tests.test_dashboard_snapshots import make_snapshot, publish
from tests.test_metrics_support import wait_for

PATH = "/ws/superadmin/metrics/"
GROUP_KEY = "fw-channels:group:superadmin_metrics"
ORIGIN = (b"origin", b"http://127.0.0.1")


class WebsocketCommunicator(ApplicationCommunicator):
    """channels.testing's communicator, minus its package's import of daphne."""

    def __init__(self, app, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(app, {"type": "websocket", "path": path, "query_string": b"",
                               "headers": headers, "subprotocols": []})

    async def connect(self, timeout: float = 1) -> tuple[bool, object]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept"
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 1) -> dict:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def headers_for(user) -> list[tuple[bytes, bytes]]:
    if user is None:
        return [ORIGIN]
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def communicator(headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, PATH, headers=headers)


def queue_depth(frame: dict, name: str) -> int:
    return next(q for q in frame["snapshot"]["queues"] if q["name"] == name)["depth"]


@pytest.fixture
def ws_db(transactional_db, clean_redis):
    """Consumers read the session from another thread: rows must be committed."""


@async_to_sync
async def connect_and_receive(headers, publish_after_connect=None, timeout=5):
    comm = communicator(headers)
    connected, _ = await comm.connect(timeout=timeout)
    assert connected
    frames = [await comm.receive_json_from(timeout=timeout)]
    if publish_after_connect is not None:
        await sync_to_async(publish)(publish_after_connect)
        frames.append(await comm.receive_json_from(timeout=timeout))
    await comm.disconnect()
    return frames


def test_a_superadmin_gets_the_current_snapshot_on_connect(ws_db, superadmin):
    publish(make_snapshot({"ai": 4}))
    (frame,) = connect_and_receive(headers_for(superadmin))
    assert frame["type"] == "snapshot"
    assert queue_depth(frame, "ai") == 4


def test_a_superadmin_then_gets_every_new_snapshot(ws_db, superadmin):
    publish(make_snapshot({"ai": 1}))
    first, second = connect_and_receive(headers_for(superadmin), publish_after_connect=make_snapshot({"ai": 9}))
    assert (queue_depth(first, "ai"), queue_depth(second, "ai")) == (1, 9)


@async_to_sync
async def two_pages_receive_one_publish(headers):
    pages = [communicator(headers), communicator(headers)]
    for page in pages:
        assert (await page.connect(timeout=5))[0]
    await sync_to_async(publish)(make_snapshot({"trigger_alerts": 3}))
    frames = [await page.receive_json_from(timeout=5) for page in pages]
    for page in pages:
        await page.disconnect()
    return frames


def test_one_publish_reaches_every_open_page(ws_db, superadmin):
    frames = two_pages_receive_one_publish(headers_for(superadmin))
    assert [queue_depth(f, "trigger_alerts") for f in frames] == [3, 3]


@async_to_sync
async def close_code_seen_by(headers):
    comm = communicator(headers)
    connected, _ = await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.wait()
    return connected, output


@pytest.mark.parametrize("who", ["staff", "outsider", None])
def test_anyone_but_a_superadmin_is_closed_with_4403(ws_db, request, who):
    user = request.getfixturevalue(who) if who else None
    connected, output = close_code_seen_by(headers_for(user))
    # Accepted, then closed: a browser sees close code 4403, not an anonymous 1006.
    assert connected is True
    assert output == {"type": "websocket.close", "code": 4403}


def test_without_a_snapshot_the_first_frame_is_the_first_published_one(ws_db, superadmin):
    frame = first_frame_after_publish(headers_for(superadmin))
    assert queue_depth(frame, "ai") == 2


def in_group(server=None) -> bool:
    client = (server or suite_server()).client(3)
    return client.zcard(f"{CHANNELS_PREFIX}:group:{GROUP}") > 0  # channels-redis' group key


def blocked_clients(server) -> int:
    return server.client(3).info("clients")["blocked_clients"]


@async_to_sync
async def first_frame_after_publish(headers):
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    await sync_to_async(wait_for)(in_group, timeout=5)  # joined: the publish cannot race the join
    await sync_to_async(publish)(make_snapshot({"ai": 2}))
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    return frame


@async_to_sync
async def close_seen_with_dead_layer(headers):
    comm = communicator(headers)
    connected, _ = await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.wait(timeout=5)  # the consumer ended by itself, without raising
    return connected, output


def test_a_dead_channels_redis_closes_the_socket_with_4503_and_no_traceback(ws_db, superadmin, settings, caplog):
    from tests.servers import free_port

    headers = headers_for(superadmin)
    settings.CHANNEL_LAYERS = channel_layers(resolve({"CHANNELS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/3"}))
    with caplog.at_level(logging.WARNING, logger="apps.dashboard.consumers"):
        connected, output = close_seen_with_dead_layer(headers)
    assert connected is True
    assert output == {"type": "websocket.close", "code": 4503}
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert warnings == ["metrics websocket closed: channels Redis unavailable (ConnectionError)"]


@async_to_sync
async def first_frame(headers):
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    return frame


def test_a_dead_cache_redis_is_reported_in_an_error_frame_not_a_crash(ws_db, superadmin, settings):
    from tests.test_dashboard import dead_cache

    headers = headers_for(superadmin)
    settings.CACHES = dead_cache()
    frame = first_frame(headers)
    assert frame["type"] == "error" and frame["error"] == "cache_unavailable"


@async_to_sync
async def close_seen_after_freezing(headers, server, timeout: float):
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    # Joined the group, then waiting in BZPOPMIN: freezing earlier would test the join instead.
    await sync_to_async(wait_for)(lambda: in_group(server), timeout=5)
    await sync_to_async(wait_for)(lambda: blocked_clients(server), timeout=5)
    os.kill(server.process.pid, signal.SIGSTOP)  # the TCP connection stays up, Redis never answers
    try:
        return await comm.receive_output(timeout=timeout)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        await comm.wait(timeout=timeout)


def test_a_channels_redis_that_stops_answering_is_noticed_within_the_read_timeout(ws_db, superadmin, settings):
    from config.redis_layout import CHANNELS_SOCKET_TIMEOUT
    from tests.servers import RedisServer

    headers = headers_for(superadmin)
    with RedisServer() as server:
        settings.CHANNEL_LAYERS = channel_layers(resolve({"CHANNELS_REDIS_URL": server.url(3)}))
        output = close_seen_after_freezing(headers, server, timeout=CHANNELS_SOCKET_TIMEOUT + 5)
    assert output == {"type": "websocket.close", "code": 4503}


@async_to_sync
async def join_times_with_no_snapshot(headers, channels_client, wait: float) -> tuple[float, float]:
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    await comm.receive_json_from(timeout=5)
    (_, joined), = channels_client.zrange(GROUP_KEY, 0, -1, withscores=True)
    await asyncio.sleep(wait)  # no snapshot is published meanwhile: the controller is "stopped"
    (_, rejoined), = channels_client.zrange(GROUP_KEY, 0, -1, withscores=True)
    assert await comm.receive_nothing(timeout=0.1)
    await comm.disconnect()
    return joined, rejoined


def test_the_process_renews_its_group_membership_while_no_snapshot_arrives(ws_db, superadmin, monkeypatch,
                                                                           clean_redis):
    """A controller stopped for longer than group_expiry must not leave open
    pages outside the group when it comes back: the hub renews on a timer."""
    from apps.dashboard import hub

    monkeypatch.setattr(hub, "CHANNELS_GROUP_REFRESH", 0.5)  # instead of 10 s
    publish(make_snapshot({"ai": 1}))
    joined, rejoined = join_times_with_no_snapshot(headers_for(superadmin), clean_redis.client(3), wait=1.5)
    assert rejoined > joined
    assert clean_redis.client(3).zcard(GROUP_KEY) == 0  # and it left when its last socket closed


@async_to_sync
async def frame_after_the_group_is_wiped(headers, channels_client) -> dict:
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    await comm.receive_json_from(timeout=5)
    channels_client.delete(GROUP_KEY)  # what a restarted Redis that kept nothing holds
    deadline = time.monotonic() + CHANNELS_GROUP_REFRESH + 5
    while not channels_client.zcard(GROUP_KEY) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await sync_to_async(publish)(make_snapshot({"ai": 7}))
    try:
        return await comm.receive_json_from(timeout=5)
    finally:
        await comm.disconnect()


def test_an_open_page_is_fed_again_within_the_refresh_after_its_group_membership_is_lost(ws_db, superadmin,
                                                                                         clean_redis):
    """A Redis restarted without its data, and reached again on a fresh
    connection, raises nothing in the hub: only the timed re-join brings
    the process back into the group."""
    assert CHANNELS_GROUP_REFRESH <= 30  # pages starve at most this long after such a restart
    publish(make_snapshot({"ai": 1}))
    frame = frame_after_the_group_is_wiped(headers_for(superadmin), clean_redis.client(3))
    assert queue_depth(frame, "ai") == 7
