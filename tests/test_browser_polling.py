"""The metrics page fed by polling alone, in real Chromium.

The page's server points its channels Redis at a port nobody listens on, so
every websocket is closed with 4503 and the page reads /api/metrics/; the
cache is the suite's Redis, where each test puts the snapshot it needs (no
controller runs).  Covered here: how the Redis rows show the last restart the
controller saw, and how the real API's 503 answers are shown (no snapshot
cached; the cache Redis down, on a second server).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.servers import free_port
from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import WebServer, off_loop, open_page, wait_for_indicator
from tests.test_dashboard_snapshots import make_snapshot, publish

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

COLLECTED = datetime.now(timezone.utc).replace(microsecond=0)
RECENT_RESTART = COLLECTED - timedelta(minutes=10)
OLD_RESTART = COLLECTED - timedelta(hours=3)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def polling_server(django_db_setup):
    server = WebServer(CHANNELS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/3")
    yield server
    server.stop()


@pytest.fixture
def open_metrics(polling_server, chromium, superadmin, clean_redis):  # noqa: F811
    contexts = []

    def opener(before_goto=None):
        context, page, _ = open_page(chromium, polling_server, superadmin, before_goto=before_goto)
        contexts.append(context)
        return page

    yield opener
    for context in contexts:
        context.close()


def restarts_snapshot() -> dict:
    """broker: no restart seen; results: ten minutes ago; cache: three hours ago."""
    snapshot = make_snapshot()
    snapshot["collected_at"] = iso(COLLECTED)
    restarts = {"broker": None, "results": iso(RECENT_RESTART), "cache": iso(OLD_RESTART), "channels": None}
    for entry in snapshot["redis"]:
        entry["last_restart_at"] = restarts[entry["role"]]
    return snapshot


def restart_cell(page, role: str) -> dict:
    return page.eval_on_selector(
        f'tr[data-role="{role}"] [data-field="restart"]',
        "cell => ({text: cell.textContent, warn: cell.classList.contains('warn-text')})")


@pytest.fixture
def restarts_page(open_metrics):
    off_loop(publish, restarts_snapshot())
    page = open_metrics()
    wait_for_indicator(page, "polling")  # the embedded snapshot, then the polled one
    return page


def test_a_server_whose_restart_was_never_seen_says_so_without_the_warning_colour(restarts_page):
    assert restart_cell(restarts_page, "broker") == {"text": "no restart seen", "warn": False}


def test_a_restart_within_the_last_hour_shows_its_time_in_the_warning_colour(restarts_page):
    expected = "restarted " + RECENT_RESTART.strftime("%Y-%m-%d %H:%M UTC")
    assert restart_cell(restarts_page, "results") == {"text": expected, "warn": True}


def test_an_older_restart_shows_its_time_without_the_warning_colour(restarts_page):
    expected = "restarted " + OLD_RESTART.strftime("%Y-%m-%d %H:%M UTC")
    assert restart_cell(restarts_page, "cache") == {"text": expected, "warn": False}


def wait_for_banner(page, text: str) -> None:
    page.wait_for_function("text => document.getElementById('banner').textContent.includes(text)", arg=text)


@pytest.fixture(scope="module")
def cache_down_server(django_db_setup):
    """A server whose cache Redis is down as well: the real API's 503 for that case."""
    server = WebServer(CHANNELS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/3",
                       REDIS_CACHE_URL=f"redis://127.0.0.1:{free_port()}/2")
    yield server
    server.stop()


def api_answer(page) -> list:
    return page.evaluate("""() => fetch('/api/metrics/', {credentials: 'same-origin'})
                                  .then(r => r.json().then(body => [r.status, body]))""")


def test_polling_with_the_cache_redis_down_shows_the_detail_the_api_gives(cache_down_server, chromium,  # noqa: F811
                                                                          superadmin):
    context, page, _ = open_page(chromium, cache_down_server, superadmin)
    try:
        status, body = api_answer(page)
        assert (status, body["error"]) == (503, "cache_unavailable")
        wait_for_banner(page, "Polling /api/metrics/ failed: " + body["detail"])
        wait_for_indicator(page, "reconnecting")
    finally:
        context.close()


def test_polling_without_a_cached_snapshot_shows_the_detail_the_api_gives(open_metrics):
    page = open_metrics()
    answer = api_answer(page)
    assert (answer[0], answer[1]["error"]) == (503, "cache_unavailable")
    wait_for_banner(page, "Polling /api/metrics/ failed: " + answer[1]["detail"])
    wait_for_indicator(page, "reconnecting")
