"""The controller through its public entry point, tick(): leadership and hysteresis.

Each test here was checked once against the bug it names, put in by hand.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.metrics.controller import Controller
from apps.metrics.leadership import Leadership
from apps.metrics.models import MetricEvent
from tests.support.blackhole import black_hole
from tests.test_metrics_support import KEYS, fake_worker, fill, layout_for, private_server, queue

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
def test_a_standby_does_not_act_while_the_broker_is_down_and_the_leader_does():
    with private_server() as server:
        leader, standby = controllers(2, layout=layout_for(server.port), transport_options={})
        try:
            assert leader.tick() is True
            assert standby.tick() is False
            server.stop()
            assert standby.tick() is False
            assert standby.tick() is False
            assert standby.last_snapshot is None
            before = leader.last_snapshot
            assert leader.tick() is True  # the leader it saw keeps acting: somebody must report the outage
            assert leader.last_snapshot is not before
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


# -- restarts: the event, field by field --------------------------------------------
def run_id(server) -> str:
    return server.client(0).info("server")["run_id"]


@pytest.mark.django_db
def test_a_restart_of_a_server_without_the_broker_records_exactly_what_happened(clean_redis):
    with private_server() as cache_server:
        layout = layout_for(clean_redis.port, cache=cache_server.url(2))
        (controller,) = controllers(1, layout=layout, transport_options={})
        try:
            assert controller.tick()
            old = run_id(cache_server)
            cache_server.restart()
            assert controller.tick()
            new = run_id(cache_server)
        finally:
            close(controller)
    event = MetricEvent.objects.get(kind="restart")
    where = f"127.0.0.1:{cache_server.port}"
    assert (event.subject, event.old_status, event.new_status) == ("redis:cache", "", "critical")
    assert event.details == {"server": where, "roles": ["cache"], "old_run_id": old, "new_run_id": new,
                             "persistent": False, "lost_depth": 0, "lost_unacked": 0,
                             "depth_after": None, "unacked_after": None}
    assert event.message == (f"Redis {where} (cache) restarted: its run_id changed; "
                             "it is not persistent: its data was lost")


@pytest.mark.django_db
def test_a_persistent_server_that_restarts_is_a_warning_saying_its_data_survived(clean_redis):
    with private_server("--appendonly", "yes") as cache_server:
        layout = layout_for(clean_redis.port, cache=cache_server.url(2), channels=cache_server.url(3))
        (controller,) = controllers(1, layout=layout, transport_options={})
        try:
            assert controller.tick()
            cache_server.restart()
            assert controller.tick()
        finally:
            close(controller)
    event = MetricEvent.objects.get(kind="restart")
    assert (event.subject, event.new_status) == ("redis:cache", "warn")
    assert event.details["roles"] == ["cache", "channels"]
    assert event.details["persistent"] is True
    assert event.message.endswith(
        "(cache, channels) restarted: its run_id changed; it is persistent: its data survived")


@pytest.mark.django_db
def test_a_persistent_broker_restart_counts_what_survived(clean_redis):
    with private_server("--appendonly", "yes") as server:
        fill(server.client(0), "ai", 4)
        server.client(0).hset("unacked", "tag", "x")
        (controller,) = controllers(1, layout=layout_for(server.port), transport_options={})
        try:
            assert controller.tick()
            server.restart()
            assert controller.tick()
        finally:
            close(controller)
    event = MetricEvent.objects.get(kind="restart")
    assert event.new_status == "warn"
    assert {key: event.details[key] for key in ("lost_depth", "lost_unacked", "depth_after", "unacked_after")} \
        == {"lost_depth": 0, "lost_unacked": 0, "depth_after": 4, "unacked_after": 1}
    assert event.message.endswith("it is persistent: 4 queued and 1 unacked messages survived")


@pytest.mark.django_db
def test_a_broker_restart_seen_by_a_new_controller_counts_no_loss_it_cannot_know(clean_redis):
    with private_server() as server:
        layout = layout_for(server.port)
        (first,) = controllers(1, layout=layout, transport_options={})
        try:
            assert first.tick()  # the run_id is remembered in the database
        finally:
            close(first)
        server.restart()
        (second,) = controllers(1, layout=layout, transport_options={})
        try:
            assert second.tick()
        finally:
            close(second)
    event = MetricEvent.objects.get(kind="restart")
    assert {key: event.details[key] for key in ("lost_depth", "lost_unacked", "depth_after", "unacked_after")} \
        == {"lost_depth": 0, "lost_unacked": 0, "depth_after": 0, "unacked_after": 0}
    assert event.message.endswith("0 queued and 0 unacked messages were lost")


# -- leadership without a broker, through an outage, and after a release -------------
def test_without_a_broker_role_there_is_nobody_to_compete_with():
    leadership = Leadership(None, KEYS, ttl=1.0)
    assert leadership.claim() is True
    assert leadership.claim() is True
    assert leadership.memory_stale is False  # leading all along: nothing to forget
    leadership.release()  # nothing to release, and no error


def test_a_controller_acting_through_a_broker_outage_keeps_its_memory():
    with black_hole() as port:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2,
                             retry=Retry(NoBackoff(), 0))  # redis-py's default retries for seconds
        leadership = Leadership(client, KEYS, ttl=1.0)
        assert leadership.claim() is True  # never saw a holder: it acts, somebody must report
        assert leadership.memory_stale is False
        assert leadership.claim() is True
        assert leadership.memory_stale is False


def test_releasing_then_leading_again_is_not_reported_as_a_lost_lock(clean_redis, caplog):
    leadership = Leadership(clean_redis.client(0), KEYS, ttl=5.0)
    assert leadership.claim() is True
    leadership.release()
    assert not clean_redis.client(0).exists(LEADER_KEY)
    with caplog.at_level("WARNING", logger="flowwatch.controller"):
        assert leadership.claim() is True
    assert "leader lock lost" not in caplog.text
    leadership.release()


def test_the_log_says_who_leads_who_stands_by_and_when_the_lock_was_lost(clean_redis, caplog):
    client = clean_redis.client(0)
    old, new = Leadership(client, KEYS, ttl=5.0), Leadership(client, KEYS, ttl=5.0)
    new.lock.owner = "standby-host:2"
    with caplog.at_level("INFO", logger="flowwatch.controller"):
        assert old.claim() is True
        assert new.claim() is False
        assert new.holder == old.lock.owner  # what "standing by: another controller holds ..." names
        client.delete(LEADER_KEY)  # expired while the old leader stalled
        assert new.claim() is True
        assert old.claim() is False
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [f"this controller is now the leader ({old.lock.owner})",
                        "this controller is now the leader (standby-host:2)",
                        "leader lock lost (expired or taken over)"]
    new.release()


def test_a_leader_that_keeps_its_lock_through_a_slow_tick_keeps_its_memory(clean_redis):
    leadership = Leadership(clean_redis.client(0), KEYS, ttl=5.0)
    assert leadership.claim() is True
    leadership.last_acted -= 60  # a tick slower than the TTL, yet the lock was still its own
    assert leadership.claim() is True
    assert leadership.memory_stale is False  # extended, not taken anew: nobody else led
    leadership.release()


def test_without_a_broker_a_slow_tick_does_not_make_the_memory_stale():
    leadership = Leadership(None, KEYS, ttl=1.0)
    assert leadership.claim() is True
    leadership.last_acted -= 60
    assert leadership.claim() is True
    assert leadership.memory_stale is False


# -- the assessment itself, on real collections ---------------------------------------
def test_a_restart_is_a_change_from_no_status_even_before_any_database_stores_it():
    # An event the controller keeps in memory while the database is away is
    # this Change as the assessment made it: it must be complete already.
    from apps.metrics.assess import Assessor
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])
        assessor = Assessor(layout, collector.servers, collector.queues, interval=5.0, clear_ticks=3, stall_ticks=6)
        try:
            first = assessor.assess(collector.collect(), Thresholds(), time.time())
            assert not first.restarted and all(c["kind"] != MetricEvent.RESTART for c in first.changes)
            server.restart()
            found = assessor.assess(collector.collect(), Thresholds(), time.time())
        finally:
            collector.close()
    [restart] = [change for change in found.changes if change["kind"] == MetricEvent.RESTART]
    assert restart["old_status"] == "" and restart["new_status"] == "critical"
    assert restart["subject"] == "redis:broker" and found.restarted is True


@pytest.mark.django_db
def test_the_eviction_delta_is_exactly_the_increase_since_the_previous_tick(clean_redis):
    from tests.test_metrics_redis import controller_with_cache_on, overfill, tick
    from tests.test_metrics_support import role

    with private_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        controller = controller_with_cache_on(server, clean_redis)
        client = server.client(2)
        try:
            assert role(tick(controller), "cache")["evicted_keys_delta"] == 0
            overfill(client)
            first = client.info("stats")["evicted_keys"]
            assert role(tick(controller), "cache")["evicted_keys_delta"] == first
            overfill(client, 1000)
            second = client.info("stats")["evicted_keys"]
            assert second > first
            snapshot = tick(controller)
            assert role(snapshot, "cache")["evicted_keys_delta"] == second - first
            assert role(snapshot, "broker")["evicted_keys_delta"] == 0  # another server, nothing evicted
        finally:
            controller.leader.release()
            controller.collector.close()


def test_a_leader_again_counts_a_restart_s_loss_from_the_depth_the_database_remembers():
    # Leading again, the controller forgets its own memory and restores what
    # the database remembers: a broker restart right then is counted from that depth.
    from apps.metrics.assess import Assessor
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])
        assessor = Assessor(layout, collector.servers, collector.queues, interval=5.0, clear_ticks=3, stall_ticks=6)
        broker = layout.roles["broker"].server
        try:
            fill(server.client(0), "ai", 7)
            assessor.assess(collector.collect(), Thresholds(), time.time())
            run_id = assessor.servers[broker].run_id
            assessor.forget()
            assessor.restore({}, {}, {broker: (run_id, None)}, depth=7)
            server.restart()  # the queued messages are lost with it
            found = assessor.assess(collector.collect(), Thresholds(), time.time())
        finally:
            collector.close()
    [restart] = [change for change in found.changes if change["kind"] == MetricEvent.RESTART]
    assert restart["details"]["lost_depth"] == 7 and restart["details"]["depth_after"] == 0


# -- stalls: only a queue with work waiting, a consumer, and nothing processed -------
def _reasons_over_ticks(count: int, before_each=lambda: None) -> list[list[str]]:
    [controller] = controllers(1, stall_ticks=2)
    found = []
    try:
        for _ in range(count):
            before_each()
            assert controller.tick() is True
            found.append(queue(controller.last_snapshot, "ai")["reasons"])
    finally:
        close(controller)
    return found


@pytest.mark.django_db
def test_a_queue_whose_consumer_keeps_processing_is_never_stalled(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    fill(client, "ai", 3)
    reasons = _reasons_over_ticks(5, lambda: client.hincrby("fw:processed:total", "ai", 1))
    assert not any(r.startswith("stalled") for tick_reasons in reasons for r in tick_reasons)


@pytest.mark.django_db
def test_neither_an_empty_queue_nor_one_without_consumer_counts_as_stalled(clean_redis):
    client = clean_redis.client(0)
    fill(client, "ai", 3)  # work waiting, nobody consuming: "no consumer", not "stalled"
    without_consumer = _reasons_over_ticks(5)
    client.delete("ai")
    fake_worker(client)  # a consumer, nothing waiting
    empty = _reasons_over_ticks(5)
    assert any(r.startswith("no consumer") for r in without_consumer[-1]), without_consumer[-1]
    assert not any(r.startswith("stalled") for tick_reasons in without_consumer + empty for r in tick_reasons)


def test_a_stall_lasts_from_its_first_still_tick_plus_one_interval():
    # The assessment on real collections, at times it is given: exact seconds.
    from apps.metrics.assess import Assessor
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout = layout_for(server.port)
        client = server.client(0)
        fake_worker(client, keys=KEYS)
        fill(client, "ai", 3)
        collector = Collector(layout, {}, ["ai"])
        assessor = Assessor(layout, collector.servers, collector.queues, interval=5.0, clear_ticks=3, stall_ticks=2)
        start = time.time()
        try:
            entries = [assessor.assess(collector.collect(), Thresholds(), start + offset).queues[0]
                       for offset in (0.0, 5.0, 10.0, 15.0)]
        finally:
            collector.close()
    # tick 1 sees the counter first (moving), ticks 2 and 3 are still: stalled since tick 2, plus one interval
    assert [e["reasons"][0] if e["reasons"] else "" for e in entries][2:] == [
        "stalled: 3 waiting, nothing processed for 10 s", "stalled: 3 waiting, nothing processed for 15 s"]


@pytest.mark.django_db
def test_memory_percent_is_the_used_memory_of_maxmemory(clean_redis):
    from tests.test_metrics_redis import controller_with_cache_on, tick
    from tests.test_metrics_support import role

    # 10 MB: about a tenth used, so that a percent off by 1 % of itself shows in two decimals.
    with private_server("--maxmemory", "10mb") as server:
        controller = controller_with_cache_on(server, clean_redis)
        try:
            snapshot = tick(controller)
        finally:
            controller.leader.release()
            controller.collector.close()
    cache, broker = role(snapshot, "cache"), role(snapshot, "broker")
    assert cache["used_memory"] > 0 and cache["maxmemory"] == 10 * 1024 * 1024 and cache["no_maxmemory"] is False
    assert cache["memory_percent"] == round(cache["used_memory"] * 100.0 / cache["maxmemory"], 2)
    # The suite's server has no maxmemory: its share of the system's memory, flagged.
    total = clean_redis.client(0).info("memory")["total_system_memory"]
    assert broker["maxmemory"] == 0 and broker["no_maxmemory"] is True and broker["used_memory"] > 0
    assert broker["memory_percent"] == round(broker["used_memory"] * 100.0 / total, 2)


def test_an_info_without_memory_figures_gives_no_percent_rather_than_an_error():
    # A managed Redis may leave total_system_memory (or more) out of INFO.
    from apps.metrics.assess import _memory

    assert _memory({}) == {"used_memory": 0, "maxmemory": 0, "memory_percent": None, "no_maxmemory": True}
    assert _memory({"used_memory": 512, "maxmemory": 0}) == {
        "used_memory": 512, "maxmemory": 0, "memory_percent": None, "no_maxmemory": True}


def test_ages_rates_and_persistence_are_computed_exactly_at_the_time_given():
    # A real broker reading, taken and assessed at a chosen time: 15 s into a minute.
    from apps.metrics.assess import Assessor, _persistence
    from apps.metrics.evaluate import Thresholds
    from tests.test_metrics_support import message
    from workers.collect import Collection, read_broker

    now = 1_800_000_015.0
    minute = int(now // 60)
    with private_server() as server:
        client = server.client(0)
        client.config_set("save", "3600 1")
        client.lpush("ai", message(now - 12.3456))
        client.lpush("stats_cache", message(now - 0.25))
        client.lpush("archive_data", message(now + 5))  # a clock ahead of ours: no negative age
        client.hset(f"fw:processed:{minute - 1}", "ai", 3)
        client.hset(f"fw:processed:{minute}", "ai", 7)
        client.hset(KEYS.unacked_key, "tag-1", message(now - 60))  # delivered to a worker, not acked yet
        client.zadd(KEYS.unacked_index_key, {"tag-1": now - 4.5})  # kombu's delivery time
        layout = layout_for(server.port)
        queues = ["ai", "stats_cache", "archive_data"]
        reading = read_broker(client, KEYS, queues, layout.roles["broker"].server, ["broker"], now=now)
    assessor = Assessor(layout, {reading.server.server: ["broker"]}, queues, interval=5.0, clear_ticks=3,
                        stall_ticks=6)
    found = assessor.assess(Collection(reading, {reading.server.server: reading.server}, 0.0), Thresholds(), now)
    entries = {entry["name"]: entry for entry in found.queues}
    assert [entries[q]["oldest_age_seconds"] for q in queues] == [12.346, 0.25, 0.0]
    assert entries["ai"]["processed_per_minute"] == 9.2  # 3 * (1 - 15/60) + 7 = 9.25, to one decimal
    assert entries["stats_cache"]["processed_per_minute"] == 0.0  # no counters at all
    assert found.unacked == {"count": 1, "oldest_age_seconds": 4.5}  # by the index, not the message's stamp
    broker = next(entry for entry in found.redis if entry["role"] == "broker")
    assert broker["persistence"] == {"save": "3600 1", "appendonly": False, "persistent": True}
    assert _persistence({}, None) == {"save": None, "appendonly": False, "persistent": False}
    assert _persistence({"aof_enabled": 1}, "") == {"save": "", "appendonly": True, "persistent": True}


def _assessor_on(layout, servers, queues=("ai",)):
    from apps.metrics.assess import Assessor

    return Assessor(layout, servers, queues, interval=5.0, clear_ticks=3, stall_ticks=6)


def _broker_entry(found) -> dict:
    return next(entry for entry in found.redis if entry["role"] == "broker")


def test_a_new_controller_counts_a_broker_restart_s_loss_from_the_depth_in_the_history_or_from_nothing():
    # A controller starting up: the database remembers the broker's run_id
    # (RedisServerState) and the depth of the last minute in the history, or no
    # depth at all (a new history, or one pruned): restore() gets 7 or None.
    # The restart found on the first tick is counted from that, not guessed.
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout = layout_for(server.port)
        broker = layout.roles["broker"].server
        old_run_id = run_id(server)
        server.restart()
        collector = Collector(layout, {}, ["ai"])
        found = {}
        try:
            for depth in (None, 7):
                assessor = _assessor_on(layout, collector.servers)
                assessor.restore({}, {}, {broker: (old_run_id, None)}, depth=depth)
                found[depth] = assessor.assess(collector.collect(), Thresholds(), time.time())
        finally:
            collector.close()
    counted = ("lost_depth", "lost_unacked", "depth_after", "unacked_after")
    [restart] = [change for change in found[None].changes if change["kind"] == MetricEvent.RESTART]
    assert {key: restart["details"][key] for key in counted} \
        == {"lost_depth": 0, "lost_unacked": 0, "depth_after": 0, "unacked_after": 0}
    assert restart["message"].endswith("0 queued and 0 unacked messages were lost")
    [restart] = [change for change in found[7].changes if change["kind"] == MetricEvent.RESTART]
    assert {key: restart["details"][key] for key in counted} \
        == {"lost_depth": 7, "lost_unacked": 0, "depth_after": 0, "unacked_after": 0}


def test_an_unreachable_server_still_shows_its_last_restart():
    from apps.metrics.evaluate import Thresholds
    from apps.metrics.models import iso
    from workers.collect import Collector
    from workers.heartbeat import HEARTBEAT_TTL

    with private_server() as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])
        assessor = _assessor_on(layout, collector.servers)
        broker = layout.roles["broker"].server
        start = time.time()
        try:
            first = assessor.assess(collector.collect(), Thresholds(), start)
            old = run_id(server)
            server.restart()
            again = assessor.assess(collector.collect(), Thresholds(), start + 5)
            new = run_id(server)
            server.stop()
            down = _broker_entry(assessor.assess(collector.collect(), Thresholds(), start + 10))
        finally:
            collector.close()
    assert _broker_entry(first)["last_restart_at"] is None
    # The run_ids to remember: the first one seen (no restart), then the new one with its restart time.
    assert (first.run_ids, first.restarted) == ([(broker, old, None)], False)
    assert (again.run_ids, again.restarted) == ([(broker, new, start + 5)], True)
    assert assessor.heartbeat_grace_until == start + 5 + HEARTBEAT_TTL  # the workers' queues were lost with it
    restarted = _broker_entry(again)
    assert restarted["last_restart_at"] == iso(start + 5)
    assert down["reachable"] is False
    assert down["last_restart_at"] == iso(start + 5)


def test_rejected_connections_are_read_from_info_and_counted_since_the_previous_tick():
    from apps.metrics.evaluate import Thresholds
    from tests.test_metrics_redis import one_connection_attempt
    from workers.collect import Collector

    with private_server("--maxclients", "2") as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])  # one connection: the broker's client
        assessor = _assessor_on(layout, collector.servers)
        other = server.client(0)
        try:
            before = _broker_entry(assessor.assess(collector.collect(), Thresholds(), time.time()))
            other.ping()  # the 2nd slot
            assert b"max number of clients" in one_connection_attempt(server.port)
            after = _broker_entry(assessor.assess(collector.collect(), Thresholds(), time.time()))
            server.restart()  # Redis' counters start again from 0
            collector.broker_client.ping()  # the collector's connection back: the 1st slot
            with socket.create_connection(("127.0.0.1", server.port)) as held:  # the 2nd
                held.sendall(b"PING\r\n")
                assert held.recv(100) == b"+PONG\r\n"
                assert b"max number of clients" in one_connection_attempt(server.port)
            restarted = _broker_entry(assessor.assess(collector.collect(), Thresholds(), time.time()))
        finally:
            other.close()
            collector.close()
    assert (before["rejected_connections"], before["rejected_connections_delta"]) == (0, 0)
    assert (after["rejected_connections"], after["rejected_connections_delta"]) == (1, 1)
    assert (after["status"], after["reasons"]) == (
        "critical", ["rejected connections 1 since the previous sample >= critical 1"])
    assert (restarted["rejected_connections"], restarted["rejected_connections_delta"]) == (1, 1)


def test_an_info_without_eviction_or_rejection_counters_counts_none_rather_than_failing():
    # A managed Redis (or a proxy in front of one) may leave counters out of INFO.
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collection, read_broker

    now = time.time()
    with private_server() as server:
        layout = layout_for(server.port)
        reading = read_broker(server.client(0), KEYS, ["ai"], layout.roles["broker"].server, ["broker"], now=now)
    assert "evicted_keys" in reading.server.info and "rejected_connections" in reading.server.info
    del reading.server.info["evicted_keys"], reading.server.info["rejected_connections"]
    assessor = _assessor_on(layout, {reading.server.server: ["broker"]})
    found = assessor.assess(Collection(reading, {reading.server.server: reading.server}, 0.0), Thresholds(), now)
    broker = _broker_entry(found)
    assert broker["reachable"] is True
    assert {key: broker[key] for key in ("evicted_keys", "rejected_connections", "evicted_keys_delta",
                                         "rejected_connections_delta")} == dict.fromkeys(
        ("evicted_keys", "rejected_connections", "evicted_keys_delta", "rejected_connections_delta"), 0)
    assert broker["status"] == "ok"


# -- the assessment, entry by entry, on real readings at chosen times ----------------
def _beat(client, name: str, queues: list[str], ts: float) -> dict:
    from workers.heartbeat import heartbeat_payload, write_heartbeat

    payload = heartbeat_payload(name, queues, ts - 100)
    payload["ts"] = ts
    write_heartbeat(client, KEYS, payload)
    return payload


def test_workers_and_queues_are_reported_field_by_field_and_judged_on_them():
    from apps.metrics.evaluate import Thresholds
    from apps.metrics.models import iso
    from tests.test_metrics_support import message
    from workers.collect import Collector

    thresholds = Thresholds(queue_overrides={"ai": (2, 5), "messagelog_read": (1, 5)})
    with private_server() as server:
        layout, client = layout_for(server.port), server.client(0)
        collector = Collector(layout, {}, ["ai", "messagelog_read"])
        assessor = _assessor_on(layout, collector.servers, collector.queues)
        assessor.hysteresis.clear_ticks = 1
        now = time.time()
        alive = _beat(client, "ai@box", ["ai"], now - 30)  # the last second it counts as alive
        _beat(client, "late@box", ["ai", "messagelog_read"], now - 30.5)
        client.lpush("ai", message(now - 8), message(now - 2))
        client.lpush(KEYS.sub_queue_for("ai", 6), message(now - 1))
        client.lpush("messagelog_read", message(now - 3))  # and nobody alive consumes it
        client.hset("fw:processed:total", "ai", 5)
        try:
            first = assessor.assess(collector.collect(), thresholds, now)
            client.delete("ai", KEYS.sub_queue_for("ai", 6))
            _beat(client, "ai@box", ["ai"], now + 5)
            second = assessor.assess(collector.collect(), thresholds, now + 5)
        finally:
            collector.close()
    assert first.workers == [
        {"name": "ai@box", "group": "ai", "host": "box", "pid": alive["pid"], "queues": ["ai"],
         "last_heartbeat": iso(now - 30), "alive": True},
        {"name": "late@box", "group": "late", "host": "box", "pid": alive["pid"], "queues": ["ai", "messagelog_read"],
         "last_heartbeat": iso(now - 30.5), "alive": False}]
    ai, log = first.queues
    assert ai == {"name": "ai", "lane": "ai", "group": "background", "depth": 3,
                  "by_priority": {"0": 2, "3": 0, "6": 1, "9": 0}, "oldest_age_seconds": 8.0, "consumers": 1,
                  "processed_per_minute": 0.0, "processed_total": 5, "warn": 2, "critical": 5,
                  "status": "warn", "reasons": ["depth 3 >= warn 2"]}
    both = ["depth 1 >= warn 1", "no consumer"]
    assert log == {"name": "messagelog_read", "lane": "hot", "group": "hot", "depth": 1,
                   "by_priority": {"0": 1, "3": 0, "6": 0, "9": 0}, "oldest_age_seconds": 3.0, "consumers": 0,
                   "processed_per_minute": 0.0, "processed_total": 0, "warn": 1, "critical": 5,
                   "status": "critical", "reasons": both}
    assert first.changes == [
        {"kind": "status", "subject": "queue:ai", "old_status": "ok", "new_status": "warn",
         "message": "queue ai is warn (was ok): depth 3 >= warn 2",
         "details": {"depth": 3, "reasons": ["depth 3 >= warn 2"]}},
        {"kind": "status", "subject": "queue:messagelog_read", "old_status": "ok", "new_status": "critical",
         "message": "queue messagelog_read is critical (was ok): depth 1 >= warn 1; no consumer",
         "details": {"depth": 1, "reasons": both}}]
    assert second.changes == [
        {"kind": "status", "subject": "queue:ai", "old_status": "warn", "new_status": "ok",
         "message": "queue ai is ok (was warn): back within thresholds", "details": {"depth": 0, "reasons": []}}]
    assert [entry["status"] for entry in second.queues] == ["ok", "critical"]


def test_while_the_broker_is_down_queues_keep_their_status_with_no_figures():
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai", "messagelog_read", "custom"])  # custom: no family of ours
        assessor = _assessor_on(layout, collector.servers, collector.queues)
        try:
            _beat(server.client(0), "ai@box", ["ai"], time.time())
            before = assessor.assess(collector.collect(), Thresholds(), time.time())
            server.stop()
            down = assessor.assess(collector.collect(), Thresholds(), time.time())
            # A controller that starts while the broker is down: what the database remembers, or ok.
            starting = _assessor_on(layout, collector.servers, collector.queues)
            starting.restore({"queue:messagelog_read": "critical"}, {}, {}, depth=None)
            started = starting.assess(collector.collect(), Thresholds(), time.time())
        finally:
            collector.close()
    assert [entry["status"] for entry in before.queues] == ["ok", "warn", "warn"]  # the others: no consumer
    assert [entry["status"] for entry in started.queues] == ["ok", "critical", "ok"]
    frozen = {"depth": None, "by_priority": {}, "oldest_age_seconds": None, "consumers": 0,
              "processed_per_minute": None, "processed_total": None, "reasons": ["broker unreachable: depth unknown"]}
    assert down.queues == [
        {"name": "ai", "lane": "ai", "group": "background", "warn": 1000, "critical": 10000, "status": "ok", **frozen},
        {"name": "messagelog_read", "lane": "hot", "group": "hot", "warn": 1000, "critical": 10000,
         "status": "warn", **frozen},
        {"name": "custom", "lane": None, "group": None, "warn": 1000, "critical": 10000, "status": "warn", **frozen}]
    assert [c for c in down.changes if c["subject"].startswith("queue:")] == []
    assert down.workers == [] and down.unacked == {"count": None, "oldest_age_seconds": None}


def roles_changed(found) -> list[dict]:
    return [change for change in found.changes if change["subject"].startswith("redis:")]


def test_roles_are_reported_with_their_place_and_every_change_in_words():
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server() as server:
        layout, client = layout_for(server.port), server.client(0)
        collector = Collector(layout, {}, ["ai"])
        assessor = _assessor_on(layout, collector.servers)
        assessor.hysteresis.clear_ticks = 2
        start = time.time()

        def tick(offset: float, thresholds: Thresholds = Thresholds()):
            return assessor.assess(collector.collect(), thresholds, start + offset)

        try:
            first = tick(0)
            client.config_set("maxmemory-policy", "allkeys-lru")
            risky = tick(5, Thresholds(memory_warn_percent=0.0))  # and any memory use is a warning
            client.config_set("maxmemory-policy", "noeviction")
            clearing, cleared = tick(10), tick(15)
            info = client.info()
            server.stop()
            down = tick(20)
        finally:
            collector.close()
    entries = {entry["role"]: entry for entry in first.redis}
    # as the layout's defaults spell them
    hosts = {"broker": "localhost", "results": "localhost", "cache": "localhost", "channels": "127.0.0.1"}
    place = ("role", "host", "port", "db", "tls", "shared_with", "reachable", "error", "status", "reasons")
    assert [{key: entry[key] for key in place} for entry in first.redis] == [
        {"role": role, "host": hosts[role], "port": server.port, "db": db, "tls": False,
         "shared_with": [r for r in ("broker", "results", "cache", "channels") if r != role],
         "reachable": True, "error": None, "status": "ok", "reasons": []}
        for db, role in enumerate(("broker", "results", "cache", "channels"))]
    broker = entries["broker"]
    assert (broker["maxclients"], broker["maxmemory_policy"]) == (info["maxclients"], "noeviction")
    assert (broker["redis_version"], broker["run_id"]) == (info["redis_version"], info["run_id"])
    assert 0 <= broker["uptime_seconds"] <= info["uptime_in_seconds"]
    assert 1 <= broker["connected_clients"] <= info["connected_clients"] + 1
    assert roles_changed(first) == []
    assert len(first.run_ids) == 1 and risky.run_ids == []  # a run_id is to be remembered once, when new
    policy = "maxmemory-policy allkeys-lru on the broker: evicted keys are lost tasks"
    reasons = {entry["role"]: entry["reasons"] for entry in risky.redis}
    memory = next(entry for entry in risky.redis if entry["role"] == "broker")["memory_percent"]
    assert reasons["broker"] == [f"memory {memory:.1f}% of system memory (no maxmemory) >= warn 0%", policy]
    assert roles_changed(risky) == [
        {"kind": "status", "subject": f"redis:{role}", "old_status": "ok", "new_status": status,
         "message": f"Redis {role} ({hosts[role]}:{server.port}) is {status} (was ok): {'; '.join(reasons[role])}",
         "details": {"reasons": reasons[role]}}
        for role, status in (("broker", "critical"), ("results", "warn"), ("cache", "warn"), ("channels", "warn"))]
    assert reasons["cache"] == reasons["broker"][:1]
    assert roles_changed(clearing) == [] and clearing.redis[0]["reasons"] == ["clearing: lower for 1/2 ticks"]
    assert roles_changed(cleared) == [
        {"kind": "status", "subject": f"redis:{role}", "old_status": status, "new_status": "ok",
         "message": f"Redis {role} ({hosts[role]}:{server.port}) is ok (was {status}): back within thresholds",
         "details": {"reasons": []}}
        for role, status in (("broker", "critical"), ("results", "warn"), ("cache", "warn"), ("channels", "warn"))]
    assert_every_role_went_unreachable(down, server.port, hosts)


def assert_every_role_went_unreachable(down, port: int, hosts: dict[str, str]) -> None:
    """The broker's entry with no figures, and one unreachable change per role (the four share a server)."""
    error = down.redis[0]["error"]
    assert error.startswith("unreachable: ")
    unknown = dict.fromkeys(("used_memory", "maxmemory", "memory_percent", "no_maxmemory", "evicted_keys_delta",
                             "rejected_connections_delta", "evicted_keys", "rejected_connections",
                             "connected_clients", "maxclients", "maxmemory_policy", "uptime_seconds", "persistence",
                             "run_id", "redis_version", "last_restart_at"))
    assert down.redis[0] == {"role": "broker", "host": "localhost", "port": port, "db": 0, "tls": False,
                             "shared_with": ["results", "cache", "channels"], "reachable": False, "error": error,
                             **unknown, "status": "critical", "reasons": [error]}
    assert roles_changed(down) == [
        {"kind": "unreachable", "subject": f"redis:{role}", "old_status": "ok", "new_status": "critical",
         "message": f"Redis {role} ({hosts[role]}:{port}) is {error}", "details": {"reasons": [error]}}
        for role in ("broker", "results", "cache", "channels")]


def test_a_role_that_answers_again_says_so_and_workers_get_one_heartbeat_to_show_up():
    # The database remembers the broker and the cache unreachable; this process
    # never saw them answer: its first reading is a recovery.
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector
    from workers.heartbeat import HEARTBEAT_TTL

    with private_server() as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])
        assessor = _assessor_on(layout, collector.servers)
        assessor.restore({"redis:cache": "critical"}, {"broker": False, "cache": False}, {}, depth=None)
        now = time.time()
        try:
            back = assessor.assess(collector.collect(), Thresholds(), now)
            waiting = assessor.assess(collector.collect(), Thresholds(), now + HEARTBEAT_TTL - 0.5)
            due = assessor.assess(collector.collect(), Thresholds(), now + HEARTBEAT_TTL)
            # Another role answering again: the workers' queues were never away.
            cache_only = _assessor_on(layout, collector.servers)
            cache_only.restore({}, {"cache": False}, {}, depth=None)
            cache_back = cache_only.assess(collector.collect(), Thresholds(), now)
        finally:
            collector.close()
    where = f"localhost:{server.port}"
    assert back.changes == [
        {"kind": "recovered", "subject": "redis:broker", "old_status": "ok", "new_status": "ok",
         "message": f"Redis broker ({where}) answers again", "details": {"reasons": []}},
        {"kind": "recovered", "subject": "redis:cache", "old_status": "critical", "new_status": "critical",
         "message": f"Redis cache ({where}) answers again; it stays critical until it has been clear for 3 ticks",
         "details": {"reasons": ["clearing: lower for 1/3 ticks"]}}]
    assert assessor.heartbeat_grace_until == now + HEARTBEAT_TTL
    unknown = "consumers unknown: waiting for worker heartbeats after the broker came back"
    assert [entry["reasons"] for entry in (back.queues[0], waiting.queues[0], due.queues[0])] == [
        [unknown], [unknown], ["no consumer"]]
    assert [entry["consumers"] for entry in (back.queues[0], due.queues[0])] == [0, 0]
    assert [change["kind"] for change in cache_back.changes] == ["recovered", "status"]  # and ai: no consumer
    assert cache_only.heartbeat_grace_until == 0.0 and cache_back.queues[0]["reasons"] == ["no consumer"]


def test_a_role_whose_server_is_missing_from_the_collection_is_unreachable_not_read():
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collection, read_broker

    now = time.time()
    with private_server() as server:
        layout = layout_for(server.port, cache="redis://127.0.0.1:1/2")  # a server of its own, never read here
        reading = read_broker(server.client(0), KEYS, ["ai"], layout.roles["broker"].server,
                              ["broker", "results", "channels"], now=now)
    servers = {reading.server.server: ["broker", "results", "channels"], ("127.0.0.1", 1): ["cache"]}
    found = _assessor_on(layout, servers).assess(
        Collection(reading, {reading.server.server: reading.server}, 0.0), Thresholds(), now)
    cache = next(entry for entry in found.redis if entry["role"] == "cache")
    assert {key: cache[key] for key in ("reachable", "error", "status", "reasons", "shared_with", "run_id")} == {
        "reachable": False, "error": "not read", "status": "critical", "reasons": ["not read"],
        "shared_with": [], "run_id": None}
    assert roles_changed(found) == [
        {"kind": "unreachable", "subject": "redis:cache", "old_status": "ok", "new_status": "critical",
         "message": "Redis cache (127.0.0.1:1) is not read", "details": {"reasons": ["not read"]}}]


def test_after_a_restart_the_eviction_delta_is_what_was_evicted_since_the_restart():
    from apps.metrics.evaluate import Thresholds
    from tests.test_metrics_redis import overfill
    from workers.collect import Collector

    with private_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        layout = layout_for(server.port, cache=server.url(2))
        collector = Collector(layout, {}, ["ai"])
        assessor = _assessor_on(layout, collector.servers)
        client = server.client(2)
        try:
            overfill(client)
            before = client.info("stats")["evicted_keys"]
            assessor.assess(collector.collect(), Thresholds(), time.time())
            server.restart()  # Redis' counters start again from 0
            overfill(client, 1500)
            cache = next(e for e in assessor.assess(collector.collect(), Thresholds(), time.time()).redis
                         if e["role"] == "cache")
        finally:
            collector.close()
    since = cache["evicted_keys"]  # Redis may evict a little more before each command: read as the tick read it
    assert 0 < since < before  # fewer than before the restart: "the increase" would be nothing
    assert cache["evicted_keys_delta"] == since
    assert cache["status"] == "critical"  # the memory is full as well: both say so
    assert f"evicted keys {since} since the previous sample >= critical 10" in cache["reasons"]


def test_a_role_s_status_clears_only_below_the_margin_under_its_thresholds():
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collector

    with private_server("--maxmemory", "10mb") as server:
        layout = layout_for(server.port)
        collector = Collector(layout, {}, ["ai"])
        assessor = _assessor_on(layout, collector.servers)
        assessor.hysteresis.clear_ticks = 2
        try:
            used = _broker_entry(assessor.assess(collector.collect(), Thresholds(), time.time()))["memory_percent"]
            statuses = []
            # above the threshold; then 5 % under it (within the 10 % margin); then far under it
            for warn in (used / 2, used * 1.05, used * 1.05, used * 1.05, used * 2, used * 2):
                found = assessor.assess(collector.collect(), Thresholds(memory_warn_percent=warn), time.time())
                statuses.append(_broker_entry(found)["status"])
        finally:
            collector.close()
    assert used > 5  # about a tenth of 10 MB: two decimals leave room for the 5 %
    assert statuses == ["warn", "warn", "warn", "warn", "warn", "ok"]


def test_a_heartbeat_without_queues_is_a_worker_consuming_nothing():
    from apps.metrics.evaluate import Thresholds
    from workers.collect import Collection, read_broker

    now = time.time()
    with private_server() as server:
        layout, client = layout_for(server.port), server.client(0)
        payload = _beat(client, "idle@box", [], now)
        del payload["queues"]
        client.hset(KEYS.workers, "idle@box", json.dumps(payload))
        reading = read_broker(client, KEYS, ["ai"], layout.roles["broker"].server, ["broker"], now=now)
    found = _assessor_on(layout, {reading.server.server: ["broker"]}).assess(
        Collection(reading, {reading.server.server: reading.server}, 0.0), Thresholds(), now)
    assert [(worker["name"], worker["queues"], worker["alive"]) for worker in found.workers] == [
        ("idle@box", [], True)]
