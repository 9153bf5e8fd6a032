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
        drop_queues(broker, "payload_read")
        context.close()
