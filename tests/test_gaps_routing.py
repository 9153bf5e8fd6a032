"""The project's own guard against undeclared queues (workers/routing.py).

Celery refuses an unknown queue *name* by itself (task_create_missing_queues
is off); a queue object, or an exchange and routing key, reach the broker
unless GuardedAMQP's ``destination`` stops them.  These tests go past
Celery's own check, so they fail when the guard stops checking.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.exceptions import QueueNotFound
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from config.celery import app
from workers.probe import probe
from workers.queues import DEFAULT_QUEUE, QUEUE_NAMES
from workers.handback import REPEAT_UNSAFE_HEADER
from workers.routing import (
    DEFAULT_VISIBILITY_TIMEOUT, EtaBeyondVisibility, UndeclaredQueue, celery_config, check_eta, destination,
    repeat_unsafe_tasks, reserved_queues, route_by_name, routed_task, task_routes,
)

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


# -- a Celery app built the way config/celery.py builds it, inside the test ----------
# The suite's own app is configured once per process, before any test runs;
# building one here lets each test see what celery_config() and GuardedAMQP do now.
@pytest.fixture
def fresh_app(clean_redis):
    fresh = Celery("routing-test", amqp="workers.routing:GuardedAMQP", set_as_current=False)
    fresh.conf.update(broker_url=clean_redis.url(0), **celery_config())
    yield fresh
    fresh.close()


def landed(server, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in server.client(0).lrange(queue, 0, -1)]


def test_an_app_built_from_the_table_sends_by_name_to_the_declared_queue_only(fresh_app, clean_redis):
    fresh_app.send_task("anything", args=(1,), queue="ai")
    (message,) = landed(clean_redis, "ai")
    assert message["headers"]["task"] == "anything"
    assert message["properties"]["delivery_info"]["routing_key"] == "ai"
    assert [key for key in clean_redis.client(0).keys("*") if not key.startswith(b"_kombu.")] == [b"ai"]


def test_an_app_built_from_the_table_sends_without_a_queue_to_the_default_one(fresh_app, clean_redis):
    fresh_app.send_task("anything")
    (message,) = landed(clean_redis, DEFAULT_QUEUE)
    assert message["properties"]["delivery_info"]["routing_key"] == DEFAULT_QUEUE


def test_an_app_built_from_the_table_routes_a_routed_task_sent_by_name(fresh_app, clean_redis):
    import apps.metrics.tasks  # noqa: F401  its routed_task decorators fill the routes
    fresh_app.send_task("apps.metrics.tasks.trigger_alerts", args=([],))
    tasks = [m["headers"]["task"] for m in landed(clean_redis, "trigger_alerts")]
    assert tasks == ["apps.metrics.tasks.trigger_alerts"]


def test_an_app_built_from_the_table_refuses_what_reaches_no_declared_queue(fresh_app, clean_redis):
    with pytest.raises(QueueNotFound):
        fresh_app.send_task("anything", queue=UNDECLARED)  # Celery's own check, left on by celery_config()
    with pytest.raises(UndeclaredQueue, match=UNDECLARED):
        fresh_app.send_task("anything", queue=Queue(UNDECLARED))
    with pytest.raises(UndeclaredQueue, match="'nope'"):
        fresh_app.send_task("anything", exchange="ai", routing_key="nope")
    assert [key for key in clean_redis.client(0).keys("*") if not key.startswith(b"_kombu.")] == []


def test_the_table_config_declares_each_queue_on_its_own_direct_exchange():
    config = celery_config()
    assert {(q.name, q.exchange.name, q.exchange.type, q.routing_key) for q in config["task_queues"]} == {
        (name, name, "direct", name) for name in QUEUE_NAMES}
    assert (config["task_default_queue"], config["task_default_exchange"], config["task_default_routing_key"]) \
        == (DEFAULT_QUEUE,) * 3


def test_an_explicit_exchange_and_key_of_a_declared_queue_land_in_that_queue(fresh_app, clean_redis):
    # The binding a consuming worker declares; declared here by hand, because kombu's
    # process-wide producer pool remembers a declaration that clean_redis has flushed since.
    with fresh_app.connection_for_write() as connection:
        Queue("ai", Exchange("ai", type="direct"), routing_key="ai").bind(connection.default_channel).declare()
    fresh_app.send_task("anything", exchange="ai", routing_key="ai")
    assert len(landed(clean_redis, "ai")) == 1
    assert landed(clean_redis, DEFAULT_QUEUE) == []


def test_a_prioritised_send_keeps_its_priority_through_the_guard(fresh_app, clean_redis):
    fresh_app.send_task("anything", queue="ai", priority=9)
    assert clean_redis.client(0).llen("ai\x06\x169") == 1  # kombu's sub-queue of priority 9


def test_publish_signals_see_the_task_name_through_the_guard(fresh_app, clean_redis):
    seen = []

    def record(sender=None, **_):
        seen.append(sender)

    before_task_publish.connect(record)
    try:
        fresh_app.send_task("named.task", queue="ai")
    finally:
        before_task_publish.disconnect(record)
    assert seen == ["named.task"]


# -- routed_task, declaring a task inside the test ------------------------------------
def fresh_function():
    """A function no earlier run in this process declared (task names are process-wide)."""
    def plus_one(x: int) -> int:
        return x + 1

    plus_one.__name__ = f"plus_one_{uuid.uuid4().hex[:8]}"
    return plus_one


def test_a_routed_task_is_named_after_its_function_and_routed_to_its_queue():
    function = fresh_function()
    task = routed_task("archive_data")(function)
    name = f"{__name__}.{function.__name__}"
    assert (task.name, task.queue) == (name, "archive_data")
    assert task_routes()[name] == "archive_data"
    assert route_by_name(name) == {"queue": "archive_data"}
    assert task.run(1) == 2  # the function itself runs
    assert routed_task("archive_data")(function).name == name  # declaring it again is harmless


def test_a_routed_task_keeps_an_explicit_name_and_its_other_options():
    name = f"tests.explicitly_named_{uuid.uuid4().hex[:8]}"
    task = routed_task("ai", name=name, max_retries=7)(fresh_function())
    assert (task.name, task.queue, task.max_retries) == (name, "ai", 7)


def test_a_task_name_nobody_routed_has_no_route():
    assert route_by_name("tests.never.declared") is None


def test_an_exchange_and_key_refusal_says_which_table_declares_queues():
    with pytest.raises(UndeclaredQueue, match=r"reaches no queue declared in workers/queues\.py$"):
        destination("ai", "nope", None, DEFAULT_QUEUE)


def test_a_task_is_safe_to_repeat_unless_declared_otherwise_and_only_the_unsafe_are_stamped(fresh_app, clean_redis):
    safe = routed_task("ai")(fresh_function())
    unsafe = routed_task("ai", repeat_safe=False)(fresh_function())
    assert (safe.repeat_safe, unsafe.repeat_safe) == (True, False)
    assert unsafe.name in repeat_unsafe_tasks()
    assert safe.name not in repeat_unsafe_tasks() and None not in repeat_unsafe_tasks()
    fresh_app.send_task(safe.name, queue="ai")
    fresh_app.send_task(unsafe.name, queue="ai")
    stamped = {m["headers"]["task"]: REPEAT_UNSAFE_HEADER in m["headers"] for m in landed(clean_redis, "ai")}
    assert stamped == {safe.name: False, unsafe.name: True}


# -- ETAs beyond the broker's visibility timeout ----------------------------------------
# A worker holds a message with an ETA unacknowledged until it is due; past the
# visibility timeout kombu gives it to a second worker as well, and it runs twice.
NOW = 1_900_000_000.0  # a fixed moment: the boundaries below are exact
VISIBILITY = 100.0


def at(seconds_from_now: float, zone: timezone | None = timezone.utc) -> str:
    moment = datetime.fromtimestamp(NOW + seconds_from_now, timezone.utc)
    return moment.replace(tzinfo=None).isoformat() if zone is None else moment.astimezone(zone).isoformat()


def test_an_eta_up_to_the_visibility_timeout_passes_and_a_second_more_is_refused_in_words():
    check_eta("t", None, VISIBILITY, now=NOW)  # no ETA: nothing to check
    check_eta("t", at(VISIBILITY), VISIBILITY, now=NOW)  # exactly at the limit: kept
    with pytest.raises(EtaBeyondVisibility) as refused:
        check_eta("tasks.later", at(VISIBILITY + 1), VISIBILITY, now=NOW)
    assert str(refused.value) == (
        "task 'tasks.later': its ETA is 101 s away, beyond the broker's visibility timeout (100 s, "
        "CELERY_VISIBILITY_TIMEOUT): a worker would hold it unacknowledged that long and it would run twice. "
        "Use a shorter countdown, or a periodic job in beat.")


def test_an_eta_is_measured_from_the_clock_when_no_moment_is_given():
    check_eta("t", datetime.fromtimestamp(time.time() + VISIBILITY - 30, timezone.utc).isoformat(), VISIBILITY)
    with pytest.raises(EtaBeyondVisibility, match="'t'"):
        check_eta("t", datetime.fromtimestamp(time.time() + VISIBILITY + 30, timezone.utc).isoformat(), VISIBILITY)


def test_an_eta_keeps_its_own_offset_and_one_without_a_zone_is_utc_whatever_the_machines_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30: a naive ETA read as local time would be 5.5 h off
    time.tzset()
    try:
        plus_two = timezone(timedelta(hours=2))
        check_eta("t", at(VISIBILITY, plus_two), VISIBILITY, now=NOW)
        with pytest.raises(EtaBeyondVisibility):
            check_eta("t", at(VISIBILITY + 1, plus_two), VISIBILITY, now=NOW)
        check_eta("t", at(VISIBILITY, None), VISIBILITY, now=NOW)
        with pytest.raises(EtaBeyondVisibility):
            check_eta("t", at(VISIBILITY + 1, None), VISIBILITY, now=NOW)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_countdown_past_the_brokers_own_visibility_timeout_is_refused_at_send_and_nothing_is_written(
        fresh_app, clean_redis):
    fresh_app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY}
    fresh_app.send_task("tasks.soon", queue="ai", countdown=VISIBILITY - 30)
    with pytest.raises(EtaBeyondVisibility, match=r"^task 'tasks\.later': its ETA is 1[23]\d s away.*\(100 s,"):
        fresh_app.send_task("tasks.later", queue="ai", countdown=VISIBILITY + 30)
    assert [m["headers"]["task"] for m in landed(clean_redis, "ai")] == ["tasks.soon"]


def test_without_a_visibility_timeout_set_the_limit_is_kombus_default(fresh_app, clean_redis):
    fresh_app.send_task("tasks.soon", queue="ai", countdown=DEFAULT_VISIBILITY_TIMEOUT - 60)
    with pytest.raises(EtaBeyondVisibility, match=f"\\({DEFAULT_VISIBILITY_TIMEOUT} s,"):
        fresh_app.send_task("tasks.later", queue="ai", countdown=DEFAULT_VISIBILITY_TIMEOUT + 60)
    assert len(landed(clean_redis, "ai")) == 1


def test_reserved_queues_are_the_declared_ones_no_task_runs_on_in_table_order():
    used = {"tasks.a": QUEUE_NAMES[1], "tasks.b": QUEUE_NAMES[3], "tasks.c": QUEUE_NAMES[1]}
    assert reserved_queues(used) == tuple(q for i, q in enumerate(QUEUE_NAMES) if i not in (1, 3))
    assert reserved_queues({}) == QUEUE_NAMES
    function = fresh_function()
    routed_task("ai")(function)  # from now on a task of this process runs on "ai"
    assert "ai" not in reserved_queues()
    assert reserved_queues() == reserved_queues(task_routes())
