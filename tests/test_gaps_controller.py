"""The controller through its public entry point, tick(): leadership and hysteresis.

Each test here was checked once against the bug it names, put in by hand.
"""

from __future__ import annotations

import pytest

from apps.metrics.controller import Controller
from apps.metrics.models import MetricEvent
from tests.test_metrics_support import fake_worker, fill, layout_for, private_server, queue

LEADER_KEY = "fw:lock:controller:leader"


def controllers(count: int, **options) -> list[Controller]:
    return [Controller(publish=False, send_tasks=False, **options) for _ in range(count)]


def close(*found: Controller) -> None:
    for controller in found:
        controller.leader.release()
        controller.collector.close()


# -- leadership ---------------------------------------------------------------------
@pytest.mark.django_db
def test_a_leader_whose_lock_expired_and_was_taken_stops_acting(clean_redis):
    old, new = controllers(2)
    try:
        assert old.tick() is True
        acted_with = old.last_snapshot
        events = MetricEvent.objects.count()
        clean_redis.client(0).delete(LEADER_KEY)  # what the lock's TTL does while the old leader stalls
        assert new.tick() is True
        assert old.tick() is False  # it ticks again, finds the lock taken, and stands by
        assert old.tick() is False
        assert old.last_snapshot is acted_with
        assert MetricEvent.objects.count() == events  # the new leader saw no change; the old one wrote nothing
        assert clean_redis.client(0).get(LEADER_KEY).decode().startswith(new.leader.lock.owner)
    finally:
        close(old, new)


@pytest.mark.django_db
def test_a_standby_does_not_act_while_the_broker_is_down():
    with private_server() as server:
        leader, standby = controllers(2, layout=layout_for(server.port), transport_options={})
        try:
            assert leader.tick() is True
            assert standby.tick() is False
            server.stop()
            assert standby.tick() is False
            assert standby.tick() is False
            assert standby.last_snapshot is None
        finally:
            close(leader, standby)


@pytest.mark.django_db
def test_a_standby_that_saw_the_leader_go_takes_over_once_the_broker_is_back():
    with private_server() as server:
        leader, standby = controllers(2, layout=layout_for(server.port), transport_options={})
        try:
            assert leader.tick() is True
            assert standby.tick() is False
            server.restart()  # the lock went with the data
            assert standby.tick() is True
            assert leader.tick() is False
        finally:
            close(leader, standby)


# -- hysteresis ---------------------------------------------------------------------
def statuses_at(controller: Controller, client, depths: list[int]) -> list[str]:
    found = []
    for depth in depths:
        client.delete("package_read")
        fill(client, "package_read", depth)
        assert controller.tick()
        found.append(queue(controller.last_snapshot, "package_read")["status"])
    return found


@pytest.mark.django_db
def test_a_depth_below_the_threshold_but_above_the_clearing_margin_keeps_the_status(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)  # a consumer everywhere: depth alone decides
    # The fake consumer processes nothing; stalling is another rule, kept out of the way.
    (controller,) = controllers(1, stall_ticks=1000)
    try:
        # warn is 1000; the status clears only under 900 (10 % lower), for three ticks.
        assert statuses_at(controller, client, [1000]) == ["warn"]
        assert statuses_at(controller, client, [950, 920, 901, 900]) == ["warn"] * 4
        assert statuses_at(controller, client, [899, 899, 899]) == ["warn", "warn", "ok"]
    finally:
        close(controller)
