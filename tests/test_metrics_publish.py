"""The snapshot's way to the Channels group: one long-lived connection, recovery, close."""

from __future__ import annotations

import json
import threading

import pytest

from apps.metrics.controller import Controller
from apps.metrics.snapshot import GROUP, close_group_publisher, group_publisher, publish_to_group
from config.redis_layout import channel_layers, resolve
from tests.test_controller import listen_once
from tests.test_metrics_support import private_server, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def channels_redis(settings):
    """The channel layer on a private server of its own, so its connections can be counted."""
    with private_server() as server:
        settings.CHANNEL_LAYERS = channel_layers(resolve({"CHANNELS_REDIS_URL": server.url(3)}))
        try:
            yield server
        finally:
            close_group_publisher()


def connections_received(server) -> int:
    return server.client(0).info("stats")["total_connections_received"]


def published(snapshot: dict) -> bool:
    try:
        publish_to_group(snapshot)
    except Exception:  # the pooled connection a restart broke; the next publish reconnects
        return False
    return True


def test_the_controller_publishes_every_tick_over_one_kept_connection(clean_redis, channels_redis):
    controller = Controller(send_tasks=False)
    assert controller.tick()
    before = connections_received(channels_redis)
    for _ in range(30):
        assert controller.tick()
    after = connections_received(channels_redis)
    controller.leader.release()
    assert not controller.effects.failing("channels")  # every publish went through
    assert after - before <= 2


def test_publishing_recovers_by_itself_after_the_channels_redis_restarts(channels_redis):
    publish_to_group({"n": 1})
    channels_redis.restart()
    wait_for(lambda: published({"n": 2}), timeout=10)
    ready, received = threading.Event(), []
    listener = threading.Thread(target=listen_once, args=(GROUP, ready, received))
    listener.start()
    assert ready.wait(10)
    publish_to_group({"n": 3})
    listener.join(15)
    assert json.loads(received[0]["frame"]) == {"type": "snapshot", "snapshot": {"n": 3}}


def test_a_stopped_controller_closes_its_channels_connection(clean_redis, channels_redis):
    observer = channels_redis.client(0)
    Controller(send_tasks=False).run(once=True)
    assert not group_publisher.running
    wait_for(lambda: observer.info("clients")["connected_clients"] == 1)  # only the observer is left


def test_the_first_snapshot_after_a_channels_redis_restart_is_delivered(channels_redis):
    publish_to_group({"n": 1})  # the publisher's pooled connection is open
    channels_redis.restart()
    ready, received = threading.Event(), []
    listener = threading.Thread(target=listen_once, args=(GROUP, ready, received))
    listener.start()
    assert ready.wait(10)
    publish_to_group({"n": 2})  # no exception: the broken connection is replaced within the send
    listener.join(15)
    assert json.loads(received[0]["frame"])["snapshot"] == {"n": 2}
