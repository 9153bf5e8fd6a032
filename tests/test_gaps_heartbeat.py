"""Heartbeats and processed counters as real Celery workers write them (no fakes)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from apps.metrics.controller import Controller
from tests.conftest import CeleryWorker
from tests.test_metrics_support import KEYS, queue, wait_for
from workers.heartbeat import PROCESSED_MINUTE_TTL, PROCESSED_TOTAL_TTL, WORKERS_KEY_TTL
from workers.probe import probe


@pytest.fixture
def two_workers(clean_redis, django_db_setup):
    """``narrow`` consumes ai only; ``wide`` consumes ai and stats_cache."""
    started = []
    try:
        for name, queues in (("narrow", ("ai",)), ("wide", ("ai", "stats_cache"))):
            started.append(CeleryWorker(queues, name=name).start())
        yield {worker.name: worker for worker in started}
    finally:
        for worker in started:
            worker.stop()


def heartbeats(client) -> dict[str, dict]:
    return {name.decode(): json.loads(raw) for name, raw in client.hgetall(KEYS.workers).items()}


@pytest.mark.django_db(transaction=True)
def test_each_real_worker_beats_with_its_own_name_group_pid_and_queues(clean_redis, two_workers):
    client = clean_redis.client(0)
    beats = wait_for(lambda: len(heartbeats(client)) == 2 and heartbeats(client), timeout=30)
    host = socket.gethostname()
    for name, worker in two_workers.items():
        beat = beats[f"{name}@{host}"]
        assert (beat["group"], beat["host"], beat["pid"]) == (name, host, worker.process.pid)
        assert sorted(beat["queues"]) == sorted(worker.queues)
        assert beat["instance"]  # told apart from an earlier start under the same name
        assert abs(beat["ts"] - time.time()) < 30  # fresh, by the worker's clock
    assert 0 < client.ttl(KEYS.workers) <= WORKERS_KEY_TTL


@pytest.mark.django_db(transaction=True)
def test_the_controller_counts_each_queues_consumers_from_real_heartbeats(clean_redis, two_workers):
    controller = Controller(publish=False, send_tasks=False)
    try:
        snapshot = wait_for(lambda: controller.tick() and len(controller.last_snapshot["workers"]) == 2
                            and controller.last_snapshot, timeout=30)
        consumers = {entry["name"]: entry["consumers"] for entry in snapshot["queues"]}
        assert (consumers.pop("ai"), consumers.pop("stats_cache")) == (2, 1)
        assert set(consumers.values()) == {0}
        assert queue(snapshot, "archive_data")["status"] == "warn"  # declared, empty, consumed by nobody
    finally:
        controller.leader.release()
        controller.collector.close()


@pytest.mark.django_db(transaction=True)
def test_a_finished_task_is_counted_under_its_queue_with_expiring_counters(clean_redis, two_workers):
    client = clean_redis.client(0)
    probe.apply_async(args=("stats_cache", 0.0), queue="stats_cache").get(timeout=30)
    wait_for(lambda: client.hget(KEYS.processed_total, "stats_cache"), timeout=15)
    assert client.hgetall(KEYS.processed_total) == {b"stats_cache": b"1"}
    assert 0 < client.ttl(KEYS.processed_total) <= PROCESSED_TOTAL_TTL
    minutes = [key for key in client.keys(KEYS.processed_minute(0).rsplit(":", 1)[0] + ":*")
               if key != KEYS.processed_total.encode()]
    assert [client.hget(key, "stats_cache") for key in minutes] == [b"1"]
    assert 0 < client.ttl(minutes[0]) <= PROCESSED_MINUTE_TTL
