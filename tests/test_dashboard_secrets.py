"""No Redis password reaches the metrics page, its JSON or its websocket (docs/configuration.md).

A private Redis that requires a password carries the broker, cache and
channels roles; the results role points, with the same password, at a port
nobody listens on, so the error paths are rendered too.  A real uvicorn and a
real controller run with those URLs; everything they send to a superadmin is
searched for the password.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import redis
from websockets.sync.client import connect as ws_connect

from tests.servers import RedisServer, free_port
from tests.test_browser_support import Controller, WebServer, session_cookie

pytestmark = pytest.mark.usefixtures("transactional_db")

SECRET = "s3cret"
WAIT_SECONDS = 60  # for the controller's first snapshot on a loaded machine


class LockedRedis(RedisServer):
    """A suite Redis server that answers only after AUTH s3cret."""

    def __init__(self) -> None:
        super().__init__("--requirepass", SECRET)

    def url(self, db: int = 0) -> str:
        return f"redis://:{SECRET}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=SECRET, socket_timeout=5)


@pytest.fixture(scope="module")
def locked_stack(django_db_setup):
    server = LockedRedis().start()
    env = {
        "CELERY_BROKER_URL": server.url(0),
        "CELERY_RESULT_BACKEND": f"redis://:{SECRET}@127.0.0.1:{free_port()}/1",  # nobody listens
        "REDIS_CACHE_URL": server.url(2),
        "CHANNELS_REDIS_URL": server.url(3),
    }
    web = WebServer(**env)
    controller = Controller(**env)
    yield web, controller
    controller.stop()
    web.stop()
    server.close()


class Visitor:
    """A superadmin's session against the live server."""

    def __init__(self, web: WebServer, user) -> None:
        self.web = web
        self.cookie = f"sessionid={session_cookie(user, web.url)['value']}"

    def get(self, path: str) -> tuple[int, str]:
        request = urllib.request.Request(self.web.url + path, headers={"Cookie": self.cookie})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def first_snapshot(self) -> str:
        """/api/metrics/ once the controller has published (it starts with the test)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            status, body = self.get("/api/metrics/")
            if status == 200:
                return body
            time.sleep(0.5)
        raise AssertionError(f"no snapshot within {WAIT_SECONDS}s: {status} {body}")

    def websocket_frames(self, count: int) -> list[str]:
        url = self.web.url.replace("http://", "ws://") + "/ws/superadmin/metrics/"
        headers = {"Cookie": self.cookie, "Origin": self.web.url}
        with ws_connect(url, additional_headers=headers, open_timeout=10) as socket:
            return [socket.recv(timeout=15) for _ in range(count)]


def embedded_json(html: str, element_id: str) -> str:
    start = html.index(f'<script id="{element_id}" type="application/json">')
    start = html.index(">", start) + 1
    return html[start:html.index("</script>", start)]


@pytest.fixture
def visitor(locked_stack, superadmin) -> Visitor:
    web, _ = locked_stack
    visitor = Visitor(web, superadmin)
    visitor.first_snapshot()
    return visitor


def test_the_page_and_its_embedded_json_never_show_the_redis_password(visitor):
    status, html = visitor.get("/superadmin/metrics/")
    assert status == 200
    snapshot = json.loads(embedded_json(html, "metrics-snapshot"))
    roles = {entry["role"]: entry for entry in snapshot["redis"]}
    assert roles["cache"]["reachable"] is True  # authenticated with the password
    assert roles["results"]["reachable"] is False  # and an error is on the page too
    assert SECRET not in html
    assert SECRET not in embedded_json(html, "metrics-snapshot")
    assert SECRET not in embedded_json(html, "metrics-config")


def test_the_metrics_api_never_shows_the_redis_password(visitor):
    status, body = visitor.get("/api/metrics/")
    assert status == 200
    assert SECRET not in body


def test_the_occupancy_report_never_shows_the_redis_password(visitor):
    status, body = visitor.get("/api/superadmin/occupancy/?refresh=1")
    assert status == 200
    servers = {server["reachable"]: server for server in json.loads(body)["servers"]}
    assert set(servers) == {True, False}  # the locked server was walked, the dead one reported
    assert SECRET not in body


def test_the_websocket_frames_never_show_the_redis_password(visitor):
    frames = visitor.websocket_frames(2)  # the snapshot on connect, then the next tick
    assert [json.loads(frame)["type"] for frame in frames] == ["snapshot", "snapshot"]
    assert not [frame for frame in frames if SECRET in frame]


def test_the_web_server_and_controller_logs_never_show_the_redis_password(locked_stack, visitor):
    web, controller = locked_stack
    visitor.get("/superadmin/metrics/")
    visitor.get("/api/superadmin/occupancy/?refresh=1")
    assert SECRET not in web.tail(10**7)
    assert SECRET not in controller.tail(10**7)
