"""The web process's one metrics group member (apps/dashboard/hub.py) on a real uvicorn.

Real uvicorn serving the real ASGI app, the real channels-redis layer on a
private Redis (so the group's members can be counted), snapshots sent to the
group the way the controller sends them: the frame encoded once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import struct

import pytest
from websockets.asyncio.client import connect

from apps.metrics.snapshot import GROUP, MESSAGE_TYPE, publish_to_cache
from config.redis_layout import CHANNELS_PREFIX, channel_layers, resolve
from tests.servers import RedisServer
from tests.test_browser_support import WebServer, session_cookie
from tests.test_dashboard_snapshots import make_snapshot
from workers.channels_layer import FlowwatchChannelLayer

pytestmark = pytest.mark.usefixtures("transactional_db")

PATH = "/ws/superadmin/metrics/"
GROUP_KEY = f"{CHANNELS_PREFIX}:group:{GROUP}"
SOCKETS = 40
RECV_TIMEOUT = 60  # generous for a loaded machine: a missing frame fails, a slow one does not
# Frames far larger than every buffer between the server and a client that
# stopped reading (the kernel's send buffer tops out at 4 MiB here, the
# client's receive buffer is made tiny): the send to that client blocks
# within the first few.
BIG_FRAME = 1 << 20
BIG_FRAMES = 12


@pytest.fixture(scope="module")
def web(django_db_setup):
    """uvicorn whose channels layer lives on a private Redis."""
    channels = RedisServer().start()
    server = WebServer(CHANNELS_REDIS_URL=channels.url(3))
    server.channels = channels
    yield server
    server.stop()
    channels.close()


def layer_for(web) -> FlowwatchChannelLayer:
    return FlowwatchChannelLayer(**channel_layers(resolve({"CHANNELS_REDIS_URL": web.channels.url(3)}))["default"]["CONFIG"])


def members(web) -> int:
    return web.channels.client(3).zcard(GROUP_KEY)


def headers(web, user) -> dict[str, str]:
    return {"Cookie": f"sessionid={session_cookie(user, web.url)['value']}", "Origin": web.url}


def marked(mark: str, size: int = 0) -> str:
    """A frame as the controller's publisher sends it, recognisable by ``mark``, padded to ``size``."""
    padding = base64.b64encode(os.urandom(size * 3 // 4)).decode() if size else ""  # incompressible
    return json.dumps({"type": "snapshot", "snapshot": {"collected_at": mark, "padding": padding}})


def mark_of(frame: str) -> str:
    return json.loads(frame)["snapshot"]["collected_at"]


async def open_sockets(web, hdrs: dict[str, str], count: int) -> list:
    url = web.url.replace("http://", "ws://") + PATH
    opened = [await connect(url, additional_headers=hdrs, open_timeout=30, max_size=2**24,
                            compression=None) for _ in range(count)]
    # The cached snapshot is sent once a socket is registered with the hub.
    firsts = await asyncio.gather(*(asyncio.wait_for(s.recv(), RECV_TIMEOUT) for s in opened))
    assert all(json.loads(f)["type"] == "snapshot" for f in firsts)
    return opened


async def next_mark(sock, mark: str) -> str:
    """Read until the frame marked ``mark``; returns it (a frame of an earlier mark may come first)."""
    while True:
        got = mark_of(await asyncio.wait_for(sock.recv(), RECV_TIMEOUT))
        if got == mark:
            return got


async def many_sockets_get_every_snapshot(web, hdrs: dict[str, str]) -> tuple[int, list[list[str]]]:
    layer = layer_for(web)
    opened = await open_sockets(web, hdrs, SOCKETS)
    during = await asyncio.to_thread(members, web)
    received: list[list[str]] = [[] for _ in opened]
    for tick in range(3):
        mark = f"tick-{tick}"
        waiting = [asyncio.ensure_future(next_mark(s, mark)) for s in opened]
        await layer.group_send(GROUP, {"type": MESSAGE_TYPE, "frame": marked(mark)})
        for index, got in enumerate(await asyncio.gather(*waiting)):
            received[index].append(got)
    await asyncio.gather(*(s.close() for s in opened))
    await layer.close_pools()
    return during, received


def test_many_sockets_on_one_process_get_every_snapshot_from_one_group_member(web, superadmin):
    from tests.test_metrics_support import wait_for

    publish_to_cache(make_snapshot({"ai": 1}))
    during, received = asyncio.run(many_sockets_get_every_snapshot(web, headers(web, superadmin)))
    assert during == 1  # the process's hub, not one member per socket
    assert received == [["tick-0", "tick-1", "tick-2"]] * SOCKETS
    wait_for(lambda: members(web) == 0, timeout=30)  # the last socket gone, the hub left the group


def raw_websocket(web, hdrs: dict[str, str], rcvbuf: int) -> tuple[socket.socket, bytes]:
    """A client that reads only when told to.  Returns the socket and the
    first byte of the cached frame: its arrival shows the socket registered."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(RECV_TIMEOUT)
    sock.connect(("127.0.0.1", web.port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    request = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               + "".join(f"{name}: {value}\r\n" for name, value in hdrs.items()) + "\r\n")
    sock.sendall(request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    first = sock.recv(1)
    assert first
    return sock, first


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed browser or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def sends_past_a_stalled_and_a_vanished_socket(web, hdrs: dict[str, str]) -> dict:
    layer = layer_for(web)
    stalled, read_already = await asyncio.to_thread(raw_websocket, web, hdrs, 4096)
    vanishing, _ = await asyncio.to_thread(raw_websocket, web, hdrs, 4096)
    healthy = await open_sockets(web, hdrs, 5)  # registered after the two above: sent to after them
    marks = [f"big-{n:02d}" for n in range(BIG_FRAMES)]
    for index, mark in enumerate(marks):
        waiting = [asyncio.ensure_future(next_mark(s, mark)) for s in healthy]
        await layer.group_send(GROUP, {"type": MESSAGE_TYPE, "frame": marked(mark, BIG_FRAME)})
        if index == 0:
            reset(vanishing)  # gone in the middle of its first big frame
        await asyncio.gather(*waiting)
    after = [asyncio.ensure_future(next_mark(s, "after")) for s in healthy]
    await layer.group_send(GROUP, {"type": MESSAGE_TYPE, "frame": marked("after")})
    await asyncio.gather(*after)
    stalled_marks = await asyncio.to_thread(read_marks, stalled, read_already, "after")
    stalled.close()
    await asyncio.gather(*(s.close() for s in healthy))
    await layer.close_pools()
    return {"stalled": stalled_marks}


def read_marks(sock: socket.socket, read_already: bytes, last: str) -> list[str]:
    """The stalled client reads at last: the marks of every whole frame up to ``last``."""
    from websockets.protocol import CLIENT, Protocol  # websockets' own frame parser, no I/O

    protocol = Protocol(CLIENT, max_size=None)
    protocol.receive_data(read_already)
    marks: list[str] = []
    text = b""
    while last not in marks:
        protocol.receive_data(sock.recv(1 << 16))
        for event in protocol.events_received():
            text += event.data
            if event.fin:
                if text[:1] == b"{":
                    marks.append(mark_of(text.decode()))
                text = b""
    return marks


def test_a_stalled_and_a_vanished_socket_do_not_hold_up_the_others(web, superadmin):
    logged_before = len(web.log.read_text(errors="replace"))
    publish_to_cache(make_snapshot({"ai": 1}))
    found = asyncio.run(sends_past_a_stalled_and_a_vanished_socket(web, headers(web, superadmin)))
    # Every healthy socket had every frame (above).  The stalled one gets the
    # newest frame once it reads again, not the whole backlog.
    stalled = found["stalled"]
    assert stalled[-1] == "after"
    assert len(stalled) < BIG_FRAMES + 1, stalled
    logged = web.log.read_text(errors="replace")[logged_before:]
    assert "Traceback" not in logged, logged
