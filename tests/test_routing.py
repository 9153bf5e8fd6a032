"""Routing against the real suite Redis and a real worker."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import QueueNotFound
from django.core.management import call_command

from config.celery import app
from tests.conftest import CeleryWorker
from tests.test_metrics_support import wait_for
from workers.probe import probe
from workers.queues import DEFAULT_QUEUE, FAMILIES, QUEUE_NAMES, worker_groups
from workers.routing import SENT_AT_HEADER, UndeclaredQueue, kombu_queues, routed_task, task_routes

# The app tasks and the queue each declares in its routed_task decorator.
APP_TASK_QUEUES = {
    "apps.metrics.tasks.trigger_alerts": "trigger_alerts",
    "apps.metrics.tasks.prune_history": "archive_data",
    "apps.metrics.tasks.rebuild_caches": "stats_cache",
    "workers.probe.probe": DEFAULT_QUEUE,
}
ARGS = {"apps.metrics.tasks.trigger_alerts": ([],), "workers.probe.probe": ("ai", 0.0)}

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


# -- routed_task: each task declares its queue -------------------------------------------
def only_queue_holding_messages(server) -> str:
    depths = {queue: broker_lengths(server, queue) for queue in QUEUE_NAMES}
    filled = [queue for queue, depth in depths.items() if depth]
    assert len(filled) == 1, depths
    return filled[0]


def test_every_app_task_is_routed_to_the_queue_its_decorator_declares():
    app.loader.import_default_modules()
    assert {name: task_routes()[name] for name in APP_TASK_QUEUES} == APP_TASK_QUEUES


@pytest.mark.parametrize("name", sorted(APP_TASK_QUEUES))
def test_a_routed_task_sent_without_a_queue_lands_in_its_declared_queue(clean_redis, name):
    app.loader.import_default_modules()
    app.tasks[name].apply_async(args=ARGS.get(name, ()), retry=False)
    assert only_queue_holding_messages(clean_redis) == APP_TASK_QUEUES[name]


@pytest.mark.parametrize("name", sorted(APP_TASK_QUEUES))
def test_a_routed_task_sent_by_name_alone_lands_in_its_declared_queue(clean_redis, name):
    app.loader.import_default_modules()
    app.send_task(name, args=ARGS.get(name, ()), retry=False)  # as beat sends its schedule
    assert only_queue_holding_messages(clean_redis) == APP_TASK_QUEUES[name]


def test_an_explicit_queue_still_wins_over_the_declared_one(clean_redis):
    from apps.metrics.tasks import rebuild_caches

    rebuild_caches.apply_async(queue="ai", retry=False)
    assert only_queue_holding_messages(clean_redis) == "ai"


def test_a_task_declared_on_an_undeclared_queue_is_refused_naming_the_queue():
    with pytest.raises(UndeclaredQueue, match="'nobody_consumes_this' is not declared in workers/queues.py"):
        @routed_task("nobody_consumes_this")
        def orphan() -> None: ...
    assert "tests.test_routing.orphan" not in task_routes()


@pytest.fixture
def scratch_task_name():
    """A task name this test declares; forgotten afterwards, so that the
    docs tests that read the app's routes do not see a test's task."""
    from workers import routing

    name = "tests.test_routing.twice"
    yield name
    routing._ROUTES.pop(name, None)
    app.tasks.pop(name, None)


def test_one_task_name_cannot_be_routed_to_two_queues(scratch_task_name):
    @routed_task("ai", name="tests.test_routing.twice")
    def first() -> None: ...

    with pytest.raises(ValueError, match="already routed to 'ai'"):
        @routed_task("stats_cache", name="tests.test_routing.twice")
        def second() -> None: ...
    assert task_routes()["tests.test_routing.twice"] == "ai"


@pytest.mark.django_db(transaction=True)
def test_a_worker_consuming_only_the_declared_queue_runs_the_routed_task(clean_redis):
    from apps.metrics.tasks import rebuild_caches

    worker = CeleryWorker(("stats_cache",), name="routed").start()
    try:
        rebuild_caches.apply_async(retry=False)
        wait_for(lambda: clean_redis.client(0).hget("fw:processed:total", "stats_cache") == b"1", timeout=30)
    finally:
        worker.stop()


def test_every_worker_group_declares_a_pool_celery_knows():
    from workers.queues import GROUPS, POOLS

    assert {g.name for g in GROUPS} == {f.group for f in FAMILIES}
    assert all(g.pool in POOLS for g in GROUPS)


def _groups_with(change: str):
    from workers.queues import GROUPS, WorkerGroup

    if change == "missing":
        return tuple(g for g in GROUPS if g.name != "alert")
    if change == "twice":
        return GROUPS + (GROUPS[0],)
    return GROUPS[:-1] + (WorkerGroup(GROUPS[-1].name, "gevent", "a pool the table does not allow"),)


@pytest.mark.parametrize(("change", "named"), [
    ("missing", "groups used by a family but not declared in GROUPS: alert"),
    ("twice", "groups declared twice: hot"),
    ("unknown pool", "groups whose pool is not one of threads, prefork: background"),
])
def test_a_group_table_with_a_mistake_is_refused_naming_it(change, named):
    from workers.queues import check_groups

    with pytest.raises(ValueError, match=named):
        check_groups(FAMILIES, _groups_with(change))
