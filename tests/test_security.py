"""Security by default, against the real ASGI server (docs/operating.md).

HTTPS behind a reverse proxy (DJANGO_HTTPS), plain loopback without it,
login throttling that works while Redis is down, and the
Content-Security-Policy header on every page.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from apps.core.csp import POLICY
from tests.conftest import PASSWORD
from tests.servers import RedisServer
from tests.test_browser_support import WebServer

pytestmark = pytest.mark.usefixtures("transactional_db")

LOGIN = "/accounts/login/"
PROXIED = {"X-Forwarded-Proto": "https"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies and forms over plain urllib; redirects are answers, not followed."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=self.headers)
        try:
            response = self.opener.open(request, timeout=15)
        except urllib.error.HTTPError as exc:
            response = exc
        return response.status, response.headers, response.read().decode(errors="replace")

    def log_in(self, username: str, password: str):
        _status, _headers, page = self.request(LOGIN)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        return self.request(LOGIN, {"csrfmiddlewaretoken": token, "username": username, "password": password})


@pytest.fixture(scope="module")
def https_server(django_db_setup):
    server = WebServer(DJANGO_HTTPS="true")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_server(django_db_setup):
    server = WebServer()
    yield server
    server.stop()


def test_behind_an_https_proxy_cookies_are_secure_and_hsts_is_sent(https_server):
    status, headers, _page = Browser(https_server.url, PROXIED).request(LOGIN)
    assert status == 200
    cookies = headers.get_all("Set-Cookie")
    assert any(c.startswith("csrftoken=") and "Secure" in c for c in cookies), cookies
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["Content-Security-Policy"] == POLICY


def test_plain_http_to_an_https_site_is_redirected_but_probes_are_not(https_server):
    browser = Browser(https_server.url)
    status, headers, _page = browser.request(LOGIN)
    assert status == 301 and headers["Location"].startswith("https://")
    assert browser.request("/healthz")[0] == 200


def test_plain_loopback_sends_no_secure_cookie_and_no_hsts(plain_server):
    status, headers, _page = Browser(plain_server.url).request(LOGIN)
    assert status == 200
    cookies = headers.get_all("Set-Cookie")
    assert any(c.startswith("csrftoken=") for c in cookies) and not any("Secure" in c for c in cookies), cookies
    assert "Strict-Transport-Security" not in headers
    assert headers["Content-Security-Policy"] == POLICY
    assert headers["X-Frame-Options"] == "DENY"


def test_failed_logins_lock_out_and_logging_in_works_with_redis_stopped(superadmin, outsider):
    from axes.models import AccessAttempt

    redis_server = RedisServer().start()
    env = {name: redis_server.url(db) for name, db in (("CELERY_BROKER_URL", 0), ("CELERY_RESULT_BACKEND", 1),
                                                       ("REDIS_CACHE_URL", 2), ("CHANNELS_REDIS_URL", 3))}
    server = WebServer(LOGIN_FAILURE_LIMIT="3", **env)
    try:
        redis_server.stop()  # from here on every Redis role is down
        attacker = Browser(server.url)
        assert [attacker.log_in("superadmin", "wrong")[0] for _ in range(3)] == [200, 200, 429]
        status, _headers, page = attacker.log_in("superadmin", PASSWORD)
        assert status == 429 and "too many" in page.lower()  # even the right password, while locked out
        assert AccessAttempt.objects.get(username="superadmin").failures_since_start == 4
        status, headers, _page = Browser(server.url).log_in("outsider", PASSWORD)
        assert status == 302, _page[-2000:]
        assert any(c.startswith("sessionid=") for c in headers.get_all("Set-Cookie"))
    finally:
        server.stop()
        redis_server.close()
