"""The oldest waiting message, read from real Redis lists as kombu writes them.

Several messages per priority list, the oldest of all in neither the first
list nor at a list's left end: reading the newest message of a list, or the
newest of the lists, gives another answer.  Times are compared with an
absolute tolerance of one second.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import types
import uuid

import pytest
import redis
from kombu import Connection

from apps.metrics.controller import Controller
from tests.test_metrics_support import KEYS, fake_worker, layout_for, message, private_server, queue
from workers.collect import Collector, describe_error, read_broker
from workers.collect_keys import BrokerKeys
from workers.collect_script import RETRY_REFUSED_AFTER, SHA, is_noscript
from workers.queues import QUEUE_NAMES
from workers.routing import SENT_AT_HEADER

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


# -- the servers other than the broker (read_server), field by field -------------------------------

def _collect(layout, queues=("ai",)):
    """One collection through a Collector of its own, and the wall-clock bounds it ran within."""
    collector = Collector(layout, {}, list(queues))
    before = time.time()
    try:
        collection = collector.collect()
    finally:
        collector.close()
    return collection, before, time.time()


def test_another_server_is_read_with_its_own_info_and_save_setting(clean_redis):
    with private_server() as other:
        other.client(0).config_set("save", "3600 1 300 100")
        expected = other.client(0).info()
        layout = layout_for(clean_redis.port, cache=other.url(2), channels=other.url(3))
        collection, before, after = _collect(layout)
    server = ("127.0.0.1", other.port)
    broker_server = ("127.0.0.1", clean_redis.port)
    assert list(collection.servers) == [broker_server, server]  # the layout's order, the broker's first
    reading = collection.servers[server]
    assert reading.server == server and reading.roles == ["cache", "channels"]
    assert reading.reachable is True and reading.error is None
    assert reading.info["run_id"] == expected["run_id"] and reading.info["tcp_port"] == other.port
    assert reading.info["redis_version"] == expected["redis_version"]
    assert reading.save == "3600 1 300 100"
    assert before <= reading.read_at <= after
    assert collection.broker is not None and collection.broker.server is collection.servers[broker_server]
    assert collection.servers[broker_server].roles == ["broker", "results"]  # every role of the broker's server
    assert collection.servers[broker_server].save == ""  # the suite's server keeps no snapshots


def test_a_server_that_refuses_config_is_read_without_its_save_setting(clean_redis):
    # A managed Redis often renames CONFIG away: INFO alone must still make a reading.
    with private_server("--rename-command", "CONFIG", "") as other:
        expected_run_id = other.client(0).info()["run_id"]
        collection, _, _ = _collect(layout_for(clean_redis.port, cache=other.url(2)))
    reading = collection.servers[("127.0.0.1", other.port)]
    assert reading.reachable is True and reading.error is None
    assert reading.info["run_id"] == expected_run_id
    assert reading.save is None


def test_an_unreachable_server_is_a_reading_that_says_why_and_the_broker_is_still_read(clean_redis):
    with private_server() as other:
        port = other.port  # a port nobody listens on once the server is closed
    collection, before, after = _collect(layout_for(clean_redis.port, cache=f"redis://127.0.0.1:{port}/2"))
    reading = collection.servers[("127.0.0.1", port)]
    assert reading.server == ("127.0.0.1", port) and reading.roles == ["cache"] and reading.reachable is False
    assert reading.error.startswith("unreachable: ") and "refused" in reading.error.lower()
    assert reading.info == {} and reading.save is None
    assert before <= reading.read_at <= after
    assert collection.broker is not None and collection.broker.queues["ai"].depth == 0


def test_a_server_that_answers_but_refuses_info_is_unreadable_and_says_why(clean_redis):
    # Connected, but INFO refused (an ACL, a renamed command): no figures to show, so not reachable.
    with private_server("--rename-command", "INFO", "") as other:
        collection, before, after = _collect(layout_for(clean_redis.port, cache=other.url(2)))
    reading = collection.servers[("127.0.0.1", other.port)]
    assert reading.server == ("127.0.0.1", other.port) and reading.roles == ["cache"]
    assert reading.reachable is False
    assert reading.error.startswith("error: unknown command 'INFO'")
    assert reading.info == {} and reading.save is None
    assert before <= reading.read_at <= after


def test_a_password_an_error_of_another_server_quotes_is_redacted(clean_redis):
    from tests.test_controller import _RedisWithoutHello

    secret = "s3cret-pa55"
    with _RedisWithoutHello() as other:
        collection, _, _ = _collect(layout_for(clean_redis.port,
                                               cache=f"redis://:{secret}@127.0.0.1:{other.port}/2"))
    reading = collection.servers[("127.0.0.1", other.port)]
    assert reading.reachable is False
    assert "unknown command" in reading.error and "***" in reading.error and secret not in reading.error


def test_closing_the_collector_closes_its_connections_to_every_server(clean_redis):
    with private_server() as other:
        observers = [other.client(0), clean_redis.client(0)]

        def connected() -> list[int]:
            return [observer.info("clients")["connected_clients"] for observer in observers]

        collector = Collector(layout_for(clean_redis.port, cache=other.url(2)), {}, ["ai"])
        collector.collect()
        open_before = connected()
        collector.close()
        open_after = connected()
    assert [before - after for before, after in zip(open_before, open_after)] == [1, 1]


# -- the reasons and warnings a collection gives -----------------------------------------------------

def test_an_error_without_text_is_named_by_its_type_and_only_the_final_full_stop_goes():
    assert describe_error(redis.ConnectionError()) == "unreachable: ConnectionError"
    assert describe_error(redis.ResponseError("")) == "error: ResponseError"
    assert describe_error(redis.ResponseError("ERR no such key in INDEX.")) == "error: ERR no such key in INDEX"


def test_a_malformed_entry_is_logged_with_what_it_is_and_that_it_is_left_out(clean_redis, caplog):
    # Bytes that are not UTF-8, and a field no earlier run in this process logged (logged once per process).
    field_name = f"ai-{uuid.uuid4().hex[:8]}"
    clean_redis.client(0).hset("fw:processed:total", field_name, b"\xff\xfe12")
    with caplog.at_level("WARNING", logger="flowwatch.collect"):
        reading = read_broker(clean_redis.client(0), KEYS, QUEUE_NAMES)
    assert field_name not in reading.processed_total
    [logged] = [r.getMessage() for r in caplog.records if field_name in r.getMessage()]
    assert logged == (f"skipped a malformed entry: fw:processed:total field {field_name!r}: "
                      f"{chr(0xFFFD) * 2 + '12'!r} is not an integer (it is left out of the metrics)")


def test_a_client_that_decodes_answers_reads_the_same_and_names_a_malformed_entry(clean_redis, caplog):
    client = redis.Redis(port=clean_redis.port, db=0, decode_responses=True)
    now = time.time()
    client.lpush("ai", message(now - 30))
    value = f"lots-{uuid.uuid4().hex[:8]}"
    client.hset("fw:processed:total", mapping={"ai": 4, "stats_cache": value})
    with caplog.at_level("WARNING", logger="flowwatch.collect"):
        reading = read_broker(client, KEYS, QUEUE_NAMES, now=now)
    client.close()
    assert reading.queues["ai"].depth == 1 and abs(reading.queues["ai"].oldest_sent_at - (now - 30)) < TOLERANCE
    assert reading.processed_total == {"ai": 4}
    assert any(f"'stats_cache': {value!r} is not an integer" in r.getMessage() for r in caplog.records)


def test_the_refusal_of_scripts_is_logged_with_the_broker_s_reason_and_when_it_is_tried_again(caplog):
    with private_server("--rename-command", "EVALSHA", "") as server, \
            caplog.at_level(logging.WARNING, logger="flowwatch.collect"):
        client = server.client(0)
        read_broker(client, KEYS, QUEUE_NAMES)
        try:
            lists = [key for name in QUEUE_NAMES for key in KEYS.sub_queues(name)]  # as the read sends them
            client.execute_command("EVALSHA", SHA, len(lists), *lists, SENT_AT_HEADER, len(KEYS.priority_steps))
        except redis.ResponseError as exc:
            refusal = str(exc)
    [logged] = [r.getMessage() for r in caplog.records if "refuses Lua scripts" in r.getMessage()]
    assert len(refusal) > 120  # the broker's own text, cut to its first 120 characters in the log
    prefix = "the broker refuses Lua scripts ("
    assert logged.startswith(prefix + refusal[:120] + "): ")
    assert logged == (f"{prefix}{refusal[:120]}): reading each queue with LLEN and LINDEX instead, which costs "
                      f"more per tick; trying the script again in {RETRY_REFUSED_AFTER:.0f} s")


# -- the broker's own reading when it cannot be read, and a layout without one ------------------------

def test_an_unreachable_broker_is_a_server_reading_that_says_why_beside_the_others(clean_redis):
    with private_server() as dead:
        port = dead.port
    urls = {role: f"redis://127.0.0.1:{port}/{db}" for role, db in (("broker", 0), ("results", 1))}
    collection, before, after = _collect(layout_for(clean_redis.port, **urls))
    assert collection.broker is None
    reading = collection.servers[("127.0.0.1", port)]
    assert reading.server == ("127.0.0.1", port) and reading.roles == ["broker", "results"]
    assert reading.reachable is False and reading.error.startswith("unreachable: ")
    assert reading.info == {} and reading.save is None
    assert before <= reading.read_at <= after
    other = collection.servers[("127.0.0.1", clean_redis.port)]
    assert other.reachable is True and other.roles == ["cache", "channels"]


def test_a_password_the_broker_s_error_quotes_is_redacted(clean_redis):
    from tests.test_controller import _RedisWithoutHello

    secret = "s3cret-pa55"
    with _RedisWithoutHello() as broker:
        collection, _, _ = _collect(layout_for(clean_redis.port,
                                               broker=f"redis://:{secret}@127.0.0.1:{broker.port}/0"))
    reading = collection.servers[("127.0.0.1", broker.port)]
    assert collection.broker is None and reading.reachable is False
    assert "unknown command" in reading.error and "***" in reading.error and secret not in reading.error


def test_a_layout_without_a_broker_reads_its_other_servers_only(clean_redis):
    layout = layout_for(clean_redis.port)
    layout = dataclasses.replace(layout, roles={role: url for role, url in layout.roles.items() if role != "broker"})
    with private_server() as other:
        layout.roles["cache"] = layout_for(other.port).roles["cache"]
        collector = Collector(layout, {}, ["ai"])
        try:
            collection = collector.collect()
        finally:
            collector.close()
    assert collector.broker_client is None and collection.broker is None
    assert [(s, r.roles, r.reachable) for s, r in collection.servers.items()] == [
        (("127.0.0.1", clean_redis.port), ["results", "channels"], True),
        (("127.0.0.1", other.port), ["cache"], True)]


def test_the_duration_of_a_collection_is_in_milliseconds_to_two_places(clean_redis, monkeypatch):
    import workers.collect as collect

    clock = iter([100.0, 100.0123456])  # the start and the end of one collection
    monkeypatch.setattr(collect, "time", types.SimpleNamespace(time=time.time, monotonic=lambda: next(clock)))
    collection, _, _ = _collect(layout_for(clean_redis.port))
    assert collection.duration_ms == 12.35


def test_a_lock_key_is_named_under_the_installation_s_prefix():
    assert KEYS.lock("controller:leader") == "fw:lock:controller:leader"
    assert BrokerKeys.from_options({"global_keyprefix": "t1_"}).lock("x") == "t1_fw:lock:x"


def test_a_noscript_answer_is_recognised_in_either_form_and_nothing_else_is():
    assert is_noscript(redis.exceptions.NoScriptError("No matching script."))
    assert is_noscript(redis.ResponseError("NOSCRIPT No matching script. Please use EVAL."))
    assert not is_noscript(redis.ResponseError("ERR unknown command 'EVALSHA'"))
    assert not is_noscript("NOSCRIPT")  # a reply that is not an error


def test_a_broker_that_will_not_load_the_script_is_read_without_it_at_once_and_says_why(caplog):
    with private_server("--rename-command", "SCRIPT", "") as server, \
            caplog.at_level(logging.WARNING, logger="flowwatch.collect"):
        client = server.client(0)
        client.lpush("ai", message(1_800_000_000.0))
        reading = read_broker(client, KEYS, QUEUE_NAMES)
        commands = {name.removeprefix("cmdstat_"): stats["calls"]
                    for name, stats in client.info("commandstats").items()}
    assert reading.queues["ai"].oldest_sent_at == 1_800_000_000.0
    assert commands["evalsha"] == 1  # the NOSCRIPT answer; after the refused load, no second try
    [logged] = [r.getMessage() for r in caplog.records if "refuses Lua scripts" in r.getMessage()]
    assert "unknown command 'SCRIPT'" in logged


def test_the_list_named_for_a_priority_is_the_one_kombu_puts_that_message_in(redis_server):
    options = {"priority_steps": [0, 4, 8], "sep": ":", "global_keyprefix": "t2_"}
    keys = BrokerKeys.from_options(options)
    client = redis_server.client(6)
    client.flushdb()
    try:
        for priority in (0, 3, 4, 9):
            with Connection(redis_server.url(6), transport_options=options) as conn:
                queue = conn.SimpleQueue("ai")
                queue.put({"priority": priority}, priority=priority)
                queue.close()
            named = keys.sub_queue_for("ai", priority)
            assert client.llen(named) == 1, (priority, named, client.keys("t2_ai*"))
            client.delete(named)
    finally:
        client.flushdb()


def test_renamed_unacked_keys_are_the_ones_read(clean_redis):
    keys = BrokerKeys.from_options({"unacked_key": "my_unacked", "unacked_index_key": "my_unacked_index"})
    assert (keys.unacked_key, keys.unacked_index_key) == ("my_unacked", "my_unacked_index")
    client = clean_redis.client(0)
    client.hset("my_unacked", mapping={"tag1": "x", "tag2": "y", "tag3": "z"})
    client.zadd("my_unacked_index", {"tag1": 1500.0, "tag2": 1200.0, "tag3": 1900.0})
    client.hset("unacked", "other", "x")  # kombu's default names: not this installation's
    reading = read_broker(client, keys, ["ai"])
    assert (reading.unacked_count, reading.unacked_oldest_at) == (3, 1200.0)


def test_a_long_malformed_entry_is_logged_with_its_key_and_its_first_80_characters(clean_redis, caplog):
    tag = uuid.uuid4().hex[:8]  # logged once per process: names no earlier run has used
    long_value = "v" * 79 + "END-OF-80" + "w" * 40
    client = clean_redis.client(0)
    client.hset("fw:workers", f"w-{tag}@h", long_value)
    client.hset("fw:processed:total", f"q-{tag}", long_value)
    now = 1_800_000_000.0
    minute = int(now // 60)
    for key in (f"fw:processed:{minute}", f"fw:processed:{minute - 1}"):
        client.hset(key, f"m-{tag}", "many")
    with caplog.at_level("WARNING", logger="flowwatch.collect"):
        read_broker(client, KEYS, QUEUE_NAMES, now=now)
    logged = sorted(r.getMessage() for r in caplog.records if tag in r.getMessage())
    assert logged == [
        f"skipped a malformed entry: fw:processed:{minute - 1} field 'm-{tag}': 'many' is not an integer "
        "(it is left out of the metrics)",
        f"skipped a malformed entry: fw:processed:{minute} field 'm-{tag}': 'many' is not an integer "
        "(it is left out of the metrics)",
        f"skipped a malformed entry: fw:processed:total field 'q-{tag}': {long_value[:80]!r} is not an integer "
        "(it is left out of the metrics)",
        f"skipped a malformed entry: fw:workers field 'w-{tag}@h': {long_value[:80]!r} is not a heartbeat "
        "(it is left out of the metrics)"]


def test_a_reading_is_of_the_time_it_is_given_and_of_that_minute_s_counters(clean_redis):
    now = 1_800_000_059.5  # the last second of a minute
    minute = int(now // 60)
    client = clean_redis.client(0)
    client.hset(f"fw:processed:{minute}", "ai", 5)
    client.hset(f"fw:processed:{minute - 1}", "ai", 9)
    reading = read_broker(client, KEYS, ["ai"], now=now)
    assert reading.read_at == now and reading.server.read_at == now
    assert (reading.processed_this_minute, reading.processed_last_minute) == ({"ai": 5}, {"ai": 9})


def test_the_collector_uses_its_transport_options_and_client_options_for_every_server(clean_redis):
    client = clean_redis.client(0)
    client.lpush("t3_ai", message(time.time()))
    with private_server() as other:
        collector = Collector(layout_for(clean_redis.port, cache=other.url(2)), {"global_keyprefix": "t3_"}, ["ai"],
                              client_options={"client_name": "fw-collector-test"})
        try:
            collection = collector.collect()
            names = [[c["name"] for c in observer.client_list()] for observer in (client, other.client(0))]
            threads = [t.name for t in threading.enumerate() if t.name.startswith("collect_")]
        finally:
            collector.close()
    assert collection.broker.queues["ai"].depth == 1
    assert all("fw-collector-test" in found for found in names), names
    assert threads  # the other servers are read on the collector's own named threads


def test_a_layout_without_any_role_collects_nothing_and_does_not_fail(clean_redis):
    layout = dataclasses.replace(layout_for(clean_redis.port), roles={})
    collector = Collector(layout, {}, ["ai"])
    try:
        collection = collector.collect()
    finally:
        collector.close()
    assert (collection.broker, collection.servers) == (None, {})


def test_a_broker_read_on_its_own_is_the_broker_s_and_survives_wrong_types_and_a_refused_info():
    with private_server("--rename-command", "INFO", "") as server:
        client = server.client(0)
        client.set("unacked", "not a hash")  # HLEN answers WRONGTYPE
        reading = read_broker(client, KEYS, ["ai"])
    assert reading.server.roles == ["broker"] and reading.server.reachable is True
    assert reading.unacked_count == 0 and reading.unacked_oldest_at is None
    assert reading.server.info == {}  # INFO refused: no figures, the queues are still read
    assert reading.queues["ai"].depth == 0
