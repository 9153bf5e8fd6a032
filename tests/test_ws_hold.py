"""The metrics websocket stays open as long as the client does, over redis:// and rediss://.

Real uvicorn, a real controller and the real channels-redis layer on a private
Redis (plain, or TLS with the suite's own CA).  An idle consumer of the layer
waits in BZPOPMIN for the layer's blocking time, then asks again; every read
timeout in play must outlast that wait.  The controller here ticks a little
slower than the wait, so each wait ends empty before the next snapshot comes.
uvicorn runs with the websocket implementation production uses, and each
socket is held longer than every timeout in play on a healthy, idle socket:
three of the layer's waits, the channels read timeout and the websocket
keepalive pings of both ends.
"""

from __future__ import annotations

import inspect
import json
import math
import threading
import time
from dataclasses import dataclass, field

import pytest
from channels_redis.core import RedisChannelLayer
from uvicorn.config import Config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from apps.metrics.snapshot import latest_snapshot
from config.redis_layout import CHANNELS_SOCKET_TIMEOUT
from tests.servers import RedisServer
from tests.support.certs import make_ca_and_server
from tests.test_browser_support import PRODUCTION_WS, Controller, WebServer, session_cookie
from tests.test_metrics_support import wait_for

pytestmark = pytest.mark.usefixtures("transactional_db")

BLOCKING_TIME = RedisChannelLayer.brpop_timeout
# Slower than the wait: between two snapshots every BZPOPMIN returns empty.
INTERVAL = BLOCKING_TIME + 0.5
# uvicorn pings an open websocket this often, and so does the client here.
PING_INTERVAL = max(inspect.signature(Config).parameters["ws_ping_interval"].default,
                    inspect.signature(ws_connect).parameters["ping_interval"].default)
# What a hold must outlast; with today's versions the pings' 20 s.
HOLD_SECONDS = max(3 * BLOCKING_TIME, CHANNELS_SOCKET_TIMEOUT, PING_INTERVAL)
# The socket is held until it brought this many different snapshots: the
# first may be the cached one sent on connect, the rest are ticks, and the
# hold spans more than HOLD_SECONDS.
SNAPSHOTS_HELD = math.ceil(HOLD_SECONDS / INTERVAL) + 2
# Generous, for a loaded 2-core machine: a missing snapshot fails, a slow one does not.
RECV_TIMEOUT = 4 * INTERVAL
CLOSE_CHANNELS_DOWN = 4503


@dataclass
class Stack:
    channels: RedisServer
    web: WebServer
    controller: Controller

    def web_log(self) -> str:
        return self.web.log.read_text(errors="replace")


@pytest.fixture(scope="module", params=["redis", pytest.param("rediss", marks=pytest.mark.tls)])
def stack(request, django_db_setup, tmp_path_factory):
    """uvicorn and a controller whose channels layer lives on a private Redis."""
    certs = make_ca_and_server(tmp_path_factory.mktemp("certs")) if request.param == "rediss" else None
    channels = RedisServer(tls=certs).start()
    env = {"CHANNELS_REDIS_URL": channels.url(3)}
    if certs:
        env["REDIS_CA_CERTS"] = certs["ca"]
    web, controller = WebServer(ws=PRODUCTION_WS, **env), Controller(interval=INTERVAL, **env)
    # The cache may still hold an earlier test's snapshot, which a socket gets
    # on connect: start once this controller has written its own.
    wait_for(lambda: (latest_snapshot() or {}).get("controller", {}).get("interval") == INTERVAL, timeout=60)
    yield Stack(channels, web, controller)
    controller.stop()
    web.stop()
    channels.close()


class CacheWatch(threading.Thread):
    """Every snapshot the controller writes to the cache while the socket is held."""

    def __init__(self) -> None:
        super().__init__(name="cache-watch", daemon=True)
        self.seen: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):  # far more often than the controller ticks
            snapshot = latest_snapshot()
            if snapshot is not None:
                self.seen.add(snapshot["collected_at"])

    def stop(self) -> set[str]:
        self.stopping.set()
        self.join(5)
        return self.seen


@dataclass
class Hold:
    snapshots: list[dict] = field(default_factory=list)
    close_code: int | None = None
    seconds: float = 0.0
    latency: float = 0.0  # the client's last ping round trip; 0 while none was answered

    @property
    def collected(self) -> list[str]:
        return [snapshot["collected_at"] for snapshot in self.snapshots]


def open_socket(stack: Stack, user):
    url = stack.web.url.replace("http://", "ws://") + "/ws/superadmin/metrics/"
    cookie = f"sessionid={session_cookie(user, stack.web.url)['value']}"
    return ws_connect(url, additional_headers={"Cookie": cookie, "Origin": stack.web.url}, open_timeout=10)


def hold_socket(stack: Stack, user) -> Hold:
    """Read snapshots until SNAPSHOTS_HELD different ones arrived, or the socket closed."""
    hold = Hold()
    with open_socket(stack, user) as socket:
        started = time.monotonic()
        try:
            while len(set(hold.collected)) < SNAPSHOTS_HELD:
                frame = json.loads(socket.recv(timeout=RECV_TIMEOUT))
                assert frame["type"] == "snapshot", frame
                hold.snapshots.append(frame["snapshot"])
        except ConnectionClosed as exc:
            hold.close_code = exc.rcvd.code if exc.rcvd else 1006
        hold.seconds = time.monotonic() - started
        hold.latency = socket.latency
    return hold


def test_a_websocket_stays_open_while_snapshots_flow_slower_than_the_layers_wait(stack, superadmin):
    watch = CacheWatch()
    watch.start()
    hold = hold_socket(stack, superadmin)
    written = watch.stop()
    assert hold.close_code is None, f"closed with {hold.close_code} after {hold.seconds:.1f} s"
    # Not a timing check: ticks come at most once per INTERVAL, so this holds
    # unless the loop above ended early.
    assert hold.seconds > HOLD_SECONDS
    assert hold.latency > 0, "the client's keepalive ping was never answered"
    assert {snapshot["controller"]["interval"] for snapshot in hold.snapshots} == {INTERVAL}
    # Every tick the controller wrote while the socket was held came over it too.
    first, last = min(hold.collected), max(hold.collected)
    assert {at for at in written if first <= at <= last} <= set(hold.collected)


def test_a_stopped_channels_redis_closes_every_socket_with_4503_and_one_warning_each(stack, superadmin):
    """Two pages share the web process's hub: each is closed, each logs its one line."""
    logged_before = len(stack.web_log())
    try:
        with open_socket(stack, superadmin) as first, open_socket(stack, superadmin) as second:
            sockets = (first, second)
            for socket in sockets:
                assert json.loads(socket.recv(timeout=RECV_TIMEOUT))["type"] == "snapshot"
            stack.channels.stop()
            codes = []
            for socket in sockets:
                with pytest.raises(ConnectionClosed) as closed:
                    while True:  # a snapshot already on its way may still arrive
                        socket.recv(timeout=RECV_TIMEOUT)
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        assert codes == [CLOSE_CHANNELS_DOWN] * len(sockets)
        logged = stack.web_log()[logged_before:]
        alarms = [line for line in logged.splitlines() if " WARNING " in line or " ERROR " in line]
        assert len(alarms) == len(sockets), logged
        for alarm in alarms:
            assert "WARNING apps.dashboard.consumers metrics websocket closed: channels Redis unavailable" in alarm
        assert "Traceback" not in logged, logged
    finally:
        stack.channels.start()  # same port: the next test's server and controller reconnect
