"""Work held by a dead worker goes back to its queue in seconds, once, at its priority.

Real Redis, a real Celery worker killed with SIGKILL, real kombu messages.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
from kombu import Connection

from apps.metrics.controller import Controller
from apps.metrics.models import MetricEvent
from config.celery import app
from tests.conftest import CeleryWorker
from tests.test_metrics_support import wait_for
from workers import handback
from workers.collect_keys import BrokerKeys
from workers.probe import drill, drill_once
from workers.routing import EtaBeyondVisibility, check_eta

KEYS = BrokerKeys.from_options({})
QUEUE = "periodic_run"  # the drills' queue


def notes(client, token: str) -> list[str]:
    return [n.decode().split()[0] for n in client.lrange(f"fw:drill:{token}", 0, -1)]


def kill_main_process(worker: CeleryWorker) -> None:
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)


def tick_until(controller: Controller, condition, timeout: float = 30.0):
    def ticked():
        controller.tick()
        return condition()
    return wait_for(ticked, timeout=timeout, interval=0.5)


@pytest.fixture
def worker(clean_redis, django_db_setup):
    started = CeleryWorker((QUEUE,), name=f"hold-{uuid.uuid4().hex[:6]}").start()
    yield started
    started.stop()


@pytest.mark.django_db(transaction=True)
def test_a_task_of_a_killed_worker_is_handed_back_once_and_finished_by_another(worker, clean_redis):
    client, token = clean_redis.client(0), uuid.uuid4().hex
    drill.apply_async(args=(token, 8))
    wait_for(lambda: notes(client, token) == ["start"], timeout=30)
    kill_main_process(worker)
    killed_at = time.monotonic()
    controller = Controller(publish=False, send_tasks=False)
    tick_until(controller, lambda: MetricEvent.objects.filter(kind=MetricEvent.HANDED_BACK).exists())
    seconds = time.monotonic() - killed_at
    controller.leader.release()
    (event,) = MetricEvent.objects.filter(kind=MetricEvent.HANDED_BACK)
    assert event.details["task"] == "workers.probe.drill" and event.details["queue"] == QUEUE
    assert client.hlen("unacked") == 0
    # Celery's pool children die with their main process (PR_SET_PDEATHSIG): nothing finished it.
    assert notes(client, token) == ["start"]
    second = CeleryWorker((QUEUE,), name="second").start()
    try:
        wait_for(lambda: notes(client, token)[-1:] == ["done"], timeout=40)
        time.sleep(max(0.0, killed_at + 10 - time.monotonic()))  # past the first run's own end
    finally:
        second.stop()
    assert notes(client, token) == ["start", "start", "done"]
    print(f"\nhanded back {seconds:.1f} s after the kill; runs started 2, finished 1")


@pytest.mark.django_db(transaction=True)
def test_a_task_not_safe_to_repeat_is_parked_and_reported_not_handed_back(worker, clean_redis):
    client, token = clean_redis.client(0), uuid.uuid4().hex
    drill_once.apply_async(args=(token, 15))
    wait_for(lambda: notes(client, token) == ["start"], timeout=30)
    kill_main_process(worker)
    controller = Controller(publish=False, send_tasks=False)
    tick_until(controller, lambda: MetricEvent.objects.filter(kind=MetricEvent.NOT_HANDED_BACK).exists())
    controller.leader.release()
    (event,) = MetricEvent.objects.filter(kind=MetricEvent.NOT_HANDED_BACK)
    assert "not safe to repeat" in event.message and event.new_status == "critical"
    assert client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
    parked = json.loads(client.hget("fw:parked", event.details["tag"]))
    assert parked[0]["headers"]["task"] == "workers.probe.drill_once"


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_the_task_it_holds(worker, clean_redis):
    client, token = clean_redis.client(0), uuid.uuid4().hex
    drill.apply_async(args=(token, 8))
    wait_for(lambda: notes(client, token) == ["start"], timeout=30)
    controller = Controller(publish=False, send_tasks=False)
    deadline = time.monotonic() + handback.HOLD_TTL + 3  # past the grace a fresh delivery gets
    while time.monotonic() < deadline:
        controller.tick()
        time.sleep(0.5)
    controller.leader.release()
    assert not MetricEvent.objects.filter(kind__in=[MetricEvent.HANDED_BACK, MetricEvent.NOT_HANDED_BACK])
    wait_for(lambda: notes(client, token) == ["start", "done"], timeout=20)


def test_an_orphan_goes_back_at_its_original_priority_and_only_once(clean_redis):
    client = clean_redis.client(0)
    drill.apply_async(args=("p", 0), priority=6)
    with Connection(app.conf.broker_url) as connection:
        channel = connection.channel()
        taken = channel.basic_get(QUEUE, no_ack=False)  # held by nobody who publishes holdings
        assert taken is not None and client.hlen("unacked") == 1
        orphans = handback.find_orphans(client, KEYS, now=time.time() + handback.HOLD_TTL + 1)
        assert [o.priority for o in orphans] == [6]
        assert [s.action for s in handback.settle(client, KEYS, orphans)] == [handback.HANDED_BACK]
        assert handback.settle(client, KEYS, orphans) == []  # a second settle moves nothing
        back = client.lrange(KEYS.sub_queue_for(QUEUE, 6), 0, -1)
        assert len(back) == 1 and client.llen(QUEUE) == 0
        assert json.loads(back[0])["headers"]["redelivered"] is True
        channel.qos._delivered.clear()  # the test's consumer does not restore it again on close


def test_an_acknowledged_message_is_never_handed_back(clean_redis):
    client = clean_redis.client(0)
    drill.apply_async(args=("ack", 0))
    with Connection(app.conf.broker_url) as connection:
        channel = connection.channel()
        taken = channel.basic_get(QUEUE, no_ack=False)
        orphans = handback.find_orphans(client, KEYS, now=time.time() + handback.HOLD_TTL + 1)
        taken.ack()
        assert handback.settle(client, KEYS, orphans) == []
    assert client.llen(QUEUE) == 0


def test_an_eta_beyond_the_visibility_timeout_is_refused_at_send():
    visibility = float(app.conf.broker_transport_options["visibility_timeout"])
    with pytest.raises(EtaBeyondVisibility, match="beyond the broker's visibility timeout"):
        drill.apply_async(args=("eta", 0), countdown=visibility + 60)
    check_eta("t", None, visibility)  # no ETA: nothing to check
    check_eta("t", "2030-01-01T00:00:00+00:00", visibility, now=1893456000 - visibility + 1)
