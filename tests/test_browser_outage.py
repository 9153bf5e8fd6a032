"""The metrics page when the channels Redis goes away: it polls, and numbers keep moving.

This module runs its own uvicorn and controller whose CHANNELS_REDIS_URL points
at a private Redis server, so that server can be stopped without touching the
suite's Redis (broker, results and cache stay up).
"""

from __future__ import annotations

import pytest

from tests.servers import RedisServer
from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import (
    Controller, FakeConsumers, WebServer, drop_queues, open_page, push, wait_for_indicator, wait_for_row,
)
from workers.queues import QUEUE_NAMES

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

# How long the channels Redis stays down while the page's attempts are counted.
OUTAGE_WINDOW_MS = 15_000
# With the backoff (1, 2, 4, 8, 15 s, jitter ±20 %) at most four websocket
# attempts start within the window, and polling stays every 3 s (at most six
# polls). A page that resets its backoff on every accepted handshake makes
# about one of each every second.
MAX_WEBSOCKET_ATTEMPTS = 5
MAX_POLLS = 7

# Every value #live-indicator's data-state takes from now on, in order.
RECORD_INDICATOR = """() => {
    window.indicatorStates = [];
    const indicator = document.getElementById('live-indicator');
    new MutationObserver(records => {
        for (const record of records) window.indicatorStates.push(record.oldValue);
        window.indicatorStates.push(indicator.dataset.state);
    }).observe(indicator, {attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
}"""


@pytest.fixture(scope="module")
def channels_redis():
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def outage_stack(django_db_setup, redis_server, channels_redis):
    broker = redis_server.client(0)
    drop_queues(broker, *QUEUE_NAMES)
    consumers = FakeConsumers(broker)
    consumers.start()
    env = {"CHANNELS_REDIS_URL": channels_redis.url(0)}
    server = WebServer(**env)
    controller = Controller(**env)
    yield server, broker
    controller.stop()
    server.stop()
    consumers.stop()


def ensure_running(server: RedisServer) -> None:
    if server.process is None:
        server.start()


def test_stopping_the_channels_redis_flips_to_polling_and_numbers_keep_updating(
        outage_stack, channels_redis, chromium, superadmin):  # noqa: F811
    server, broker = outage_stack
    context, page, _ = open_page(chromium, server, superadmin)
    try:
        wait_for_indicator(page, "live")
        push(broker, "payload_read", 2)
        wait_for_row(page, "payload_read", "2")

        channels_redis.stop()
        wait_for_indicator(page, "polling")
        push(broker, "payload_read", 3)
        wait_for_row(page, "payload_read", "5")
        assert page.get_attribute("#live-indicator", "data-state") == "polling"

        channels_redis.start()  # same port: the page finds its websocket again
        wait_for_indicator(page, "live", timeout=45_000)
        push(broker, "payload_read", 1)
        wait_for_row(page, "payload_read", "6")
    finally:
        ensure_running(channels_redis)
        drop_queues(broker, "payload_read")
        context.close()


def test_while_the_channels_redis_is_down_the_page_backs_off_and_never_shows_live(
        outage_stack, channels_redis, chromium, superadmin):  # noqa: F811
    server, _ = outage_stack
    context, page, _ = open_page(chromium, server, superadmin)
    websockets, polls = [], []
    page.on("websocket", lambda socket: websockets.append(socket.url))
    page.on("request", lambda request: "/api/metrics/" in request.url
            and "/history/" not in request.url and polls.append(request.url))
    try:
        wait_for_indicator(page, "live")
        page.evaluate(RECORD_INDICATOR)
        sockets_before, polls_before = len(websockets), len(polls)

        channels_redis.stop()  # the server now accepts each websocket, then closes it with 4503
        wait_for_indicator(page, "polling")
        page.wait_for_timeout(OUTAGE_WINDOW_MS)  # a window to count in; nothing asserts durations

        attempts, poll_count = len(websockets) - sockets_before, len(polls) - polls_before
        assert 1 <= attempts <= MAX_WEBSOCKET_ATTEMPTS, f"{attempts} websocket attempts in the window"
        assert poll_count <= MAX_POLLS, f"{poll_count} polls of /api/metrics/ in the window"
        states = page.evaluate("window.indicatorStates")
        # A snapshot already on its way may re-set "live" before the outage is
        # noticed; once the page has left "live", it must never show it again.
        left = next(i for i, state in enumerate(states) if state != "live")
        assert "live" not in states[left:], states  # no flicker back to live
    finally:
        ensure_running(channels_redis)
        context.close()
