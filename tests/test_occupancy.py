"""What occupies Redis: the bounded sampler against the suite's real Redis."""

from __future__ import annotations

import os
import signal

import redis.client
from django.core.cache import cache

from config import redis_layout
from tests.servers import free_port
from tests.test_dashboard import redis_connects
from tests.test_metrics_support import private_server
from workers import cache_families, occupancy
from workers.collect_keys import BrokerKeys
from workers.occupancy import Budget, CachedReport, Classifier
from workers.redis_clients import client_for

BROKER, RESULTS, CACHE, CHANNELS = 0, 1, 2, 3


def database(report: dict, db: int) -> dict:
    (server,) = report["servers"]
    return next(entry for entry in server["databases"] if entry["db"] == db)


def category(report: dict, db: int, name: str) -> dict:
    return next(c for c in database(report, db)["categories"] if c["name"] == name)


def test_keys_are_sorted_into_the_categories_an_operator_knows():
    classify = Classifier().classify
    keys = BrokerKeys.from_options()
    assert classify("ai") == classify("ai\x06\x169") == "broker queues"
    assert classify(keys.unacked_key) == classify(keys.unacked_index_key) == "unacked"
    assert classify("celery-task-meta-6f1c") == "task results"
    assert classify("fw:1:docs_index:abc") == "cache family docs_index"
    assert classify("fw:1:nobody_declared:x") == "cache, undeclared family nobody_declared"
    assert classify(keys.lock("tenant:1")) == classify(keys.lock_index) == classify(keys.lock("controller:leader")) == "locks"
    assert classify(keys.workers) == "worker heartbeats"
    assert classify("fw-channels:group:superadmin_metrics") == "channels"
    assert classify("_kombu.binding.ai") == "kombu bindings"
    assert classify("something_else") == "other"


def test_a_report_measures_every_role_of_the_suite_redis(clean_redis):
    clean_redis.client(BROKER).lpush("ai", b"x" * 100)
    clean_redis.client(BROKER).set(BrokerKeys.from_options().lock("job"), "me|t", px=60_000)
    clean_redis.client(RESULTS).set("celery-task-meta-1234abcd", b"{}", ex=3600)
    cache.set(cache_families.key("docs_index", "probe"), [1, 2, 3], timeout=60)
    clean_redis.client(CHANNELS).set("fw-channels:probe", b"1", ex=60)

    report = occupancy.report()

    assert category(report, BROKER, "broker queues")["keys"] == 1
    assert category(report, BROKER, "broker queues")["bytes"] >= 100
    assert category(report, BROKER, "locks")["keys"] == 1
    assert category(report, RESULTS, "task results")["keys"] == 1
    assert category(report, CACHE, "cache family docs_index")["keys"] == 1
    assert category(report, CACHE, "cache family stats")["keys"] == 0  # every family is listed
    assert category(report, CHANNELS, "channels")["keys"] == 1
    assert all(database(report, db)["complete"] for db in range(4))


def test_keys_without_a_ttl_are_grouped_by_prefix_and_flagged_when_unexpected(clean_redis):
    client = clean_redis.client(CACHE)
    for n in range(5):
        client.set(f"legacy-report-{n:08d}", b"v")
    clean_redis.client(BROKER).lpush("package_read", b"m")
    report = occupancy.report()
    cache_groups = {row["prefix"]: row for row in database(report, CACHE)["no_ttl"]}
    assert cache_groups["legacy-report-*"]["keys"] == 5
    assert cache_groups["legacy-report-*"]["expected"] is False
    broker_groups = {row["prefix"]: row for row in database(report, BROKER)["no_ttl"]}
    assert broker_groups["package_read"]["expected"] is True  # queues never expire, by design


def test_a_large_keyspace_stops_at_the_key_budget_and_is_scaled_up(clean_redis):
    client = clean_redis.client(RESULTS)
    with client.pipeline(transaction=False) as pipe:
        for n in range(3000):
            pipe.set(f"celery-task-meta-{n:012d}", b"{}", ex=600)
        pipe.execute()
    # A clock that never moves: only the key budget can stop this walk.
    report = occupancy.report(budget=Budget(keys_per_db=500, seconds=5.0, scan_count=100), clock=lambda: 0.0)
    results_db = database(report, RESULTS)
    assert results_db["complete"] is False and results_db["stopped"] == "key budget"
    assert results_db["sampled"] == 500
    results = category(report, RESULTS, "task results")
    assert results["estimated"] is True
    assert results["sampled_keys"] == 500 and results["keys"] == 3000


def test_the_time_budget_stops_the_walk_at_the_next_batch_and_skips_the_remaining_databases(
        clean_redis, monkeypatch):
    client = clean_redis.client(CACHE)
    with client.pipeline(transaction=False) as pipe:
        for n in range(2000):
            pipe.set(f"fw:1:stats:{n}", b"v", ex=600)
        pipe.execute()
    now, batches = [0.0], []
    measure = redis.client.Pipeline.execute

    def slow_batch(pipe, *args, **kwargs):
        batches.append(len(pipe.command_stack) // 2)  # MEMORY USAGE + PTTL per key
        now[0] += 1.0  # every batch "takes" one second of the report's clock
        return measure(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", slow_batch)
    report = occupancy.report(budget=Budget(keys_per_db=100_000, seconds=2.5, scan_count=100),
                              clock=lambda: now[0])

    cache_db = database(report, CACHE)
    assert len(batches) == 3  # at 1 s and 2 s within the budget; after the third, past it
    assert cache_db["stopped"] == "time budget" and cache_db["complete"] is False
    assert cache_db["sampled"] == sum(batches) and 0 < cache_db["sampled"] < 2000
    stats = category(report, CACHE, "cache family stats")
    assert stats["estimated"] is True and stats["keys"] == 2000  # scaled up by DBSIZE / sampled
    channels_db = database(report, CHANNELS)  # walked after the cache: nothing left of the budget
    assert (channels_db["stopped"], channels_db["sampled"]) == ("time budget", 0)


def test_an_unreachable_server_is_reported_not_raised_without_waiting_past_two_seconds():
    port = free_port()
    layout = redis_layout.resolve({"REDIS_LOCAL_PORT": str(port), "REDIS_LOCAL": "false"})
    with redis_connects() as attempts:
        report = occupancy.report(layout=layout, client_for=lambda role: client_for(role, layout))
    (server,) = report["servers"]
    assert server["reachable"] is False and server["error"].startswith("unreachable")
    assert server["address"] == f"127.0.0.1:{port}"
    assert attempts.ports() == {port}
    assert attempts.worst_case_seconds() <= 2.0 and attempts.longest_read_timeout() <= 1.0


def test_a_frozen_server_costs_one_read_timeout_not_a_second_on_a_new_connection():
    """SIGSTOP: the pooled connection's read times out; retrying it on a fresh
    connection (accepted by the kernel, never answered) would double the wait."""
    with private_server() as server:
        layout = redis_layout.resolve({"REDIS_LOCAL_PORT": str(server.port), "REDIS_LOCAL": "false"})
        clients = {role: client_for(role, layout) for role in redis_layout.ROLES}
        assert clients["broker"].ping()  # a pooled connection exists, as in a running web process
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with redis_connects() as attempts:
                report = occupancy.report(layout=layout, client_for=clients.__getitem__)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    (entry,) = report["servers"]
    assert entry["error"] == "unreachable: TimeoutError"
    assert list(attempts) == []  # one read timeout (1 s) bounds it: within the 1.5 s budget


def test_the_cached_report_is_reused_until_it_is_old():
    built: list[int] = []
    now = [100.0]
    cached = CachedReport(max_age=15, build=lambda: built.append(1) or {"n": len(built)}, clock=lambda: now[0])
    assert cached.get() == {"n": 1}
    now[0] += 10
    assert cached.get() == {"n": 1}
    now[0] += 10
    assert cached.get() == {"n": 2}
    assert cached.get(refresh=True) == {"n": 3}
