"""The project's own guard against undeclared queues (workers/routing.py).

Celery refuses an unknown queue *name* by itself (task_create_missing_queues
is off); a queue object, or an exchange and routing key, reach the broker
unless GuardedAMQP's ``destination`` stops them.  These tests go past
Celery's own check, so they fail when the guard stops checking.
"""

from __future__ import annotations

import pytest
from kombu import Exchange, Queue

from config.celery import app
from workers.probe import probe
from workers.queues import DEFAULT_QUEUE
from workers.routing import UndeclaredQueue, destination

UNDECLARED = "nobody_consumes_this"


def test_a_queue_object_the_table_does_not_declare_is_refused_and_nothing_is_written(clean_redis):
    before = set(clean_redis.client(0).keys("*"))
    stray = Queue(UNDECLARED, Exchange(UNDECLARED, type="direct"), routing_key=UNDECLARED)
    with pytest.raises(UndeclaredQueue, match=f"'{UNDECLARED}' is not declared in workers/queues.py"):
        probe.apply_async(args=("x", 0.0), queue=stray)
    with pytest.raises(UndeclaredQueue, match=UNDECLARED):
        app.send_task("workers.probe.probe", args=("x", 0.0), queue=stray)
    assert set(clean_redis.client(0).keys("*")) == before


def test_a_declared_queue_object_still_goes_through(clean_redis):
    declared = Queue("ai", Exchange("ai", type="direct"), routing_key="ai")
    probe.apply_async(args=("x", 0.0), queue=declared)
    assert clean_redis.client(0).llen("ai") == 1


@pytest.mark.parametrize("exchange, routing_key, queue, expected", [
    (None, None, None, DEFAULT_QUEUE),
    (None, None, "ai", "ai"),
    (None, None, Queue("stats_cache"), "stats_cache"),
    ("ai", "ai", None, "ai"),
    (Exchange("ai"), "ai", None, "ai"),
    ("ai", None, "ai", "ai"),
])
def test_a_declared_destination_is_the_queue_the_message_lands_in(exchange, routing_key, queue, expected):
    assert destination(exchange, routing_key, queue, DEFAULT_QUEUE) == expected


@pytest.mark.parametrize("exchange, routing_key, queue, named", [
    (None, None, UNDECLARED, UNDECLARED),
    (None, None, Queue(UNDECLARED), UNDECLARED),
    ("ai", "nope", None, "'nope'"),
    ("ai", "stats_cache", None, "'stats_cache'"),  # a declared key on another queue's exchange
    (Exchange("ai"), "stats_cache", None, "'stats_cache'"),
    ("nope", "ai", None, "'nope'"),
    ("ai", None, None, "without a routing key"),
    (None, None, UNDECLARED, "workers/queues.py"),
])
def test_an_undeclared_destination_is_refused_naming_what_is_wrong(exchange, routing_key, queue, named):
    with pytest.raises(UndeclaredQueue, match=named):
        destination(exchange, routing_key, queue, DEFAULT_QUEUE)


def test_an_undeclared_default_queue_is_refused_too():
    with pytest.raises(UndeclaredQueue, match="'celery'"):
        destination(None, None, None, "celery")
