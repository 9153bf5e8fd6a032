"""Routing against the real suite Redis and a real worker."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import QueueNotFound
from django.core.management import call_command

from workers.probe import probe
from workers.queues import FAMILIES, QUEUE_NAMES, worker_groups
from workers.routing import SENT_AT_HEADER, UndeclaredQueue, kombu_queues

PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def broker_lengths(server, queue: str) -> int:
    client = server.client(0)
    return sum(client.llen(queue + suffix) for suffix in PRIORITY_SUFFIXES)


def test_the_table_declares_distinct_queues_each_in_one_worker_group():
    assert len(set(QUEUE_NAMES)) == len(QUEUE_NAMES)
    assert sorted(q for group in worker_groups().values() for q in group) == sorted(QUEUE_NAMES)


def test_each_queue_has_its_own_direct_exchange_and_key():
    for queue in kombu_queues():
        assert queue.exchange.name == queue.name
        assert queue.exchange.type == "direct"
        assert queue.routing_key == queue.name


def test_a_task_sent_to_one_queue_lands_in_that_queue_only(clean_redis):
    probe.apply_async(args=("package_read", 0.0), queue="package_read")
    depths = {queue: broker_lengths(clean_redis, queue) for queue in QUEUE_NAMES}
    assert depths.pop("package_read") == 1
    assert set(depths.values()) == {0}


def test_a_prioritised_task_lands_in_a_priority_sub_queue(clean_redis):
    probe.apply_async(args=("ai", 0.0), queue="ai", priority=9)
    client = clean_redis.client(0)
    assert client.llen("ai") == 0
    assert broker_lengths(clean_redis, "ai") == 1


def test_every_published_task_carries_its_send_time(clean_redis):
    probe.apply_async(args=("stats_cache", 0.0), queue="stats_cache")
    raw = clean_redis.client(0).lindex("stats_cache", -1)
    headers = json.loads(raw)["headers"]
    assert isinstance(headers[SENT_AT_HEADER], float)


def test_an_undeclared_queue_is_refused_at_send_time(clean_redis):
    before = set(clean_redis.client(0).keys("*"))
    with pytest.raises(QueueNotFound):
        probe.apply_async(args=("x", 0.0), queue="nobody_consumes_this")
    assert set(clean_redis.client(0).keys("*")) == before


def test_an_exchange_and_key_that_reach_no_declared_queue_are_refused(clean_redis):
    before = set(clean_redis.client(0).keys("*"))
    with pytest.raises(UndeclaredQueue, match="nope"):
        probe.apply_async(args=("x", 0.0), exchange="ai", routing_key="nope")
    with pytest.raises(UndeclaredQueue):
        probe.apply_async(args=("x", 0.0), exchange="ai", routing_key="stats_cache")
    assert set(clean_redis.client(0).keys("*")) == before


@pytest.mark.django_db(transaction=True)
def test_probe_queues_reports_a_consumer_for_every_queue(celery_worker, capsys):
    call_command("probe_queues", "--timeout", "30", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert [q["queue"] for q in report["queues"]] == list(QUEUE_NAMES)
    for entry in report["queues"]:
        assert entry["worker"].startswith("pytest@")
        assert entry["round_trip_ms"] >= 0


def test_probe_queues_fails_naming_the_queues_nobody_consumes(clean_redis, capsys):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=f"{len(QUEUE_NAMES)} queue"):
        call_command("probe_queues", "--timeout", "0.5")
    out = capsys.readouterr().out
    assert all(f"FAIL  {family.queue}" in out for family in FAMILIES)
