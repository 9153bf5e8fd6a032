"""HTTP through the real uvicorn and config.asgi: the one-call handler keeps pages, CSRF, sessions, static files."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.test_browser_support import WebServer
from tests.test_metrics_api import published  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("transactional_db")


TOKEN = "handler-token-0123456789"


@pytest.fixture(scope="module")
def web():
    server = WebServer(METRICS_API_TOKEN=TOKEN)
    yield server
    server.stop()


def _login_form(client: httpx.Client) -> str:
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and 'name="username"' in page.text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def test_a_login_without_the_csrf_token_is_refused(web, superadmin):
    with httpx.Client(base_url=web.url) as client:
        _login_form(client)
        answer = client.post("/accounts/login/", data={"username": "superadmin", "password": PASSWORD})
    assert answer.status_code == 403
    assert "sessionid" not in answer.cookies


def test_a_login_with_the_token_opens_a_session_that_renders_the_metrics_page(web, superadmin):
    with httpx.Client(base_url=web.url) as client:
        token = _login_form(client)
        answer = client.post("/accounts/login/", data={"username": "superadmin", "password": PASSWORD,
                                                       "csrfmiddlewaretoken": token})
        assert answer.status_code == 302 and client.cookies.get("sessionid")
        page = client.get("/superadmin/metrics/")
        logged_out = client.post("/accounts/logout/", data={"csrfmiddlewaretoken": client.cookies["csrftoken"]})
        after = client.get("/superadmin/metrics/")
    assert page.status_code == 200 and "messagelog_read" in page.text
    assert page.headers["x-frame-options"] == "DENY"  # the whole chain ran, to its outermost middleware
    assert logged_out.status_code in (200, 302)
    assert after.status_code == 302 and "/accounts/login/" in after.headers["location"]


def test_a_static_file_streams_whole(web):
    with httpx.Client(base_url=web.url) as client:
        answer = client.get("/static/dashboard/metrics.js")
        again = client.get("/static/dashboard/metrics.js")  # the connection is still usable after a stream
    assert answer.status_code == 200 and len(answer.content) > 1000
    assert int(answer.headers["content-length"]) == len(answer.content) == len(again.content)


def test_an_unknown_path_is_a_404_not_an_error(web):
    with httpx.Client(base_url=web.url) as client:
        answer = client.get("/no/such/page")
    assert answer.status_code == 404


def test_healthz_runs_its_chain_on_the_event_loop_even_for_a_signed_in_browser(web, superadmin):
    """/healthz is marked runs_on_event_loop: with a session, a CSRF cookie and a message
    waiting, its chain still does no I/O (a query there would be a 500), and leaves them be."""
    with httpx.Client(base_url=web.url) as client:
        token = _login_form(client)
        client.post("/accounts/login/", data={"username": "superadmin", "password": PASSWORD,
                                              "csrfmiddlewaretoken": token})
        health = client.get("/healthz")
        page = client.get("/superadmin/metrics/")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert health.headers["x-frame-options"] == "DENY" and "no-store" in health.headers["cache-control"]
    assert not health.cookies  # nothing read, nothing written: the session and CSRF cookies stay as they were
    assert page.status_code == 200


def on_loop(path: str, *headers: tuple[bytes, bytes], scope: dict | None = None) -> bool:
    from config.asgi import django_asgi_app

    scope = {} if scope is None else scope
    scope.update(type="http", path=path, root_path="", headers=list(headers))
    return django_asgi_app._on_loop(scope)


def test_only_a_marked_view_runs_on_the_event_loop():
    assert on_loop("/healthz")
    assert not on_loop("/readyz")  # it pings Redis and the database: a thread
    assert not on_loop("/api/metrics/")
    assert not on_loop("/no/such/page")


def test_api_metrics_runs_on_the_loop_only_for_a_bearer_while_the_process_keeps_fresh_bytes():
    from apps.metrics.views import MEMO_SCOPE_KEY, snapshot_memo

    bearer, session = (b"authorization", b"Bearer some-token"), (b"cookie", b"sessionid=abc")
    snapshot_memo.clear()
    try:
        assert not on_loop("/api/metrics/", bearer)  # nothing kept: the cache is read, in a thread
        snapshot_memo._entry = (time.monotonic(), b'{"kept": 1}')
        scope: dict = {}
        assert on_loop("/api/metrics/", bearer, scope=scope)
        assert scope[MEMO_SCOPE_KEY] == b'{"kept": 1}'  # the view answers these bytes, whatever happens meanwhile
        assert not on_loop("/api/metrics/", session)  # a session is a database read
        assert not on_loop("/api/metrics/history/", bearer)  # reads the database whatever the token
        snapshot_memo._entry = (time.monotonic() - snapshot_memo.seconds - 0.01, b'{"kept": 1}')
        assert not on_loop("/api/metrics/", bearer)  # run out: the cache is read again, in a thread
    finally:
        snapshot_memo.clear()


def test_a_bearer_answered_from_memory_gets_the_snapshot_and_a_wrong_token_is_still_refused(web, published):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=web.url) as client:
        first = client.get("/api/metrics/", headers=headers)  # read from the cache, kept for half a second
        wrong = client.get("/api/metrics/", headers={"Authorization": "Bearer not-the-token"})
        anonymous = client.get("/api/metrics/")
        kept = [client.get("/api/metrics/", headers=headers) for _ in range(10)]
    assert first.status_code == 200 and first.json()["collected_at"] == published["collected_at"]
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
    assert anonymous.status_code == 401
    assert all(a.status_code == 200 and a.content == first.content for a in kept)
    assert all(a.headers["content-type"] == "application/json" and "no-store" in a.headers["cache-control"]
               for a in kept)
