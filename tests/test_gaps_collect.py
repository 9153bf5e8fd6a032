"""The oldest waiting message, read from real Redis lists as kombu writes them.

Several messages per priority list, the oldest of all in neither the first
list nor at a list's left end: reading the newest message of a list, or the
newest of the lists, gives another answer.  Times are compared with an
absolute tolerance of one second.
"""

from __future__ import annotations

import time

import pytest

from apps.metrics.controller import Controller
from tests.test_metrics_support import KEYS, fake_worker, layout_for, message, queue
from workers.collect import Collector

# Ages in seconds, per priority list (priority step -> messages, oldest first).
AGES = {0: [40, 20, 2], 3: [90, 50, 10], 6: [70, 1]}
OLDEST = 90
TOLERANCE = 1.0


def push_aged_messages(client, name: str = "ai") -> float:
    """LPUSH the messages oldest first, as kombu does; returns the time they were stamped against."""
    now = time.time()
    lists = dict(zip(KEYS.priority_steps, KEYS.sub_queues(name)))
    for step, ages in AGES.items():
        for age in ages:
            client.lpush(lists[step], message(now - age))
    return now


def test_the_collector_reads_the_oldest_message_across_the_priority_lists(clean_redis):
    now = push_aged_messages(clean_redis.client(0))
    collector = Collector(layout_for(clean_redis.port), {}, ["ai"])
    try:
        reading = collector.collect().broker.queues["ai"]
    finally:
        collector.close()
    assert reading.depth == sum(len(ages) for ages in AGES.values())
    assert abs(reading.oldest_sent_at - (now - OLDEST)) < TOLERANCE


@pytest.mark.django_db
def test_the_snapshot_ages_a_queue_by_its_oldest_message(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    push_aged_messages(client)
    controller = Controller(publish=False, send_tasks=False)
    try:
        assert controller.tick()
        age = queue(controller.last_snapshot, "ai")["oldest_age_seconds"]
    finally:
        controller.leader.release()
        controller.collector.close()
    assert abs(age - OLDEST) < TOLERANCE


def test_an_empty_queue_has_no_age(clean_redis):
    collector = Collector(layout_for(clean_redis.port), {}, ["ai"])
    try:
        assert collector.collect().broker.queues["ai"].oldest_sent_at is None
    finally:
        collector.close()
