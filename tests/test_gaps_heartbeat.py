"""Heartbeats and processed counters as real Celery workers write them (no fakes)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from apps.metrics.controller import Controller
from tests.conftest import CeleryWorker
from tests.test_metrics_support import KEYS, queue, wait_for
from workers import heartbeat
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


@pytest.mark.django_db(transaction=True)
def test_many_finished_tasks_are_counted_exactly_though_written_in_batches(clean_redis, two_workers):
    client = clean_redis.client(0)
    results = [probe.apply_async(args=(name, 0.0), queue=name) for name in ("ai", "stats_cache") * 15]
    for result in results:
        result.get(timeout=30)
    wait_for(lambda: client.hgetall(KEYS.processed_total) == {b"ai": b"15", b"stats_cache": b"15"}, timeout=15)
    minutes = [key for key in client.keys(KEYS.processed_minute(0).rsplit(":", 1)[0] + ":*")
               if key != KEYS.processed_total.encode()]
    per_minute = [client.hgetall(key) for key in minutes]
    assert sum(int(counts.get(b"ai", 0)) for counts in per_minute) == 15
    assert sum(int(counts.get(b"stats_cache", 0)) for counts in per_minute) == 15


def test_the_counter_keeps_each_tasks_minute_and_writes_at_once_when_flushed(clean_redis, monkeypatch):
    monkeypatch.setattr(heartbeat, "FLUSH_INTERVAL", 3600.0)  # only flush() writes during this test
    client = clean_redis.client(0)
    counter = heartbeat.ProcessedCounter(KEYS)
    minute = int(time.time() // 60)
    for now, queue_name in ((minute * 60 + 1, "ai"), (minute * 60 + 59, "ai"), (minute * 60 + 61, "ai"),
                            (minute * 60 + 62, "stats_cache")):
        counter.add(queue_name, now=now)
    time.sleep(0.2)
    assert client.hgetall(KEYS.processed_total) == {}  # counted, not written yet
    counter.flush()  # what worker_shutdown and worker_process_shutdown do
    assert client.hgetall(KEYS.processed_total) == {b"ai": b"3", b"stats_cache": b"1"}
    assert client.hgetall(KEYS.processed_minute(minute)) == {b"ai": b"2"}
    assert client.hgetall(KEYS.processed_minute(minute + 1)) == {b"ai": b"1", b"stats_cache": b"1"}
    assert 0 < client.ttl(KEYS.processed_minute(minute + 1)) <= PROCESSED_MINUTE_TTL
    assert 0 < client.ttl(KEYS.processed_total) <= PROCESSED_TOTAL_TTL
    counter.flush()  # nothing new: nothing written twice
    assert client.hgetall(KEYS.processed_total) == {b"ai": b"3", b"stats_cache": b"1"}
