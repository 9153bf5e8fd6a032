"""The broker reader against real Redis servers: depth, age, unacked, round trips."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from kombu import Connection

from tests.test_metrics_support import KEYS, fake_worker, fill, layout_for, message, private_server
from workers.collect import Collector, describe_error, read_broker
from workers.collect_keys import BrokerKeys
from workers.probe import probe
from workers.queues import QUEUE_NAMES


def test_the_depth_sums_every_priority_sub_queue_celery_wrote(clean_redis):
    for priority in (0, 3, 6, 9, 9):
        probe.apply_async(args=("ai", 0.0), queue="ai", priority=priority)
    reading = read_broker(clean_redis.client(0), KEYS, QUEUE_NAMES)
    assert reading.queues["ai"].depth == 5
    assert reading.queues["ai"].by_priority == {0: 1, 3: 1, 6: 1, 9: 2}
    assert all(reading.queues[q].depth == 0 for q in QUEUE_NAMES if q != "ai")


def test_it_honours_priority_steps_sep_and_global_keyprefix_as_kombu_names_them(redis_server):
    options = {"priority_steps": [0, 5], "sep": "::", "global_keyprefix": "tenant1_"}
    client = redis_server.client(5)
    client.flushdb()
    with Connection(redis_server.url(5), transport_options=options) as conn:
        queue = conn.SimpleQueue("ai")
        for priority in (0, 2, 5, 9):
            queue.put({"n": priority}, priority=priority)
        queue.close()
    keys = BrokerKeys.from_options(options)
    assert keys.sub_queues("ai") == ["tenant1_ai", "tenant1_ai::5"]
    assert read_broker(client, keys, ["ai"]).queues["ai"].depth == 4
    client.flushdb()


def test_the_defaults_come_from_kombu_itself():
    from kombu.transport.redis import Channel

    keys = BrokerKeys.from_options(None)
    assert keys.priority_steps == tuple(Channel.priority_steps)
    assert keys.sep == Channel.sep
    assert keys.unacked_key == Channel.unacked_key


def test_the_oldest_waiting_message_gives_the_age(clean_redis):
    client = clean_redis.client(0)
    now = time.time()
    client.lpush("ai", message(now - 30))  # oldest, at the right end
    client.lpush("ai", message(now - 5))
    client.lpush("ai\x06\x169", message(now - 60))  # older still, in a priority sub-queue
    reading = read_broker(client, KEYS, ["ai"], now=now)
    assert abs(reading.queues["ai"].oldest_sent_at - (now - 60)) < 1.0  # absolute: approx on an epoch allows minutes


def test_a_published_task_carries_the_send_time_the_reader_ages_by(clean_redis):
    before = time.time()
    probe.apply_async(args=("stats_cache", 0.0), queue="stats_cache")
    reading = read_broker(clean_redis.client(0), KEYS, ["stats_cache"])
    assert before <= reading.queues["stats_cache"].oldest_sent_at <= time.time()


def test_unacked_count_and_oldest_delivery_are_read(clean_redis):
    client = clean_redis.client(0)
    client.hset("unacked", mapping={"tag1": "x", "tag2": "y"})
    client.zadd("unacked_index", {"tag1": 1000.0, "tag2": 2000.0})
    reading = read_broker(client, KEYS, QUEUE_NAMES)
    assert reading.unacked_count == 2
    assert reading.unacked_oldest_at == 1000.0


def test_a_key_of_the_wrong_type_spoils_one_figure_not_the_collection(clean_redis):
    client = clean_redis.client(0)
    client.set("ai", "not a list")
    fill(client, "stats_cache", 3)
    reading = read_broker(client, KEYS, QUEUE_NAMES)
    assert reading.queues["ai"].depth == 0
    assert reading.queues["stats_cache"].depth == 3


class _Turns:
    """Round trips seen on a real socket: a send that follows a receive (or comes
    first) starts a new one; the client's sends within one trip do not."""

    def __init__(self) -> None:
        self.count = 0
        self.last = ""

    def sending(self) -> None:
        if self.last != "send":
            self.count += 1
        self.last = "send"

    def receiving(self) -> None:
        self.last = "recv"


class _CountingSocket:
    def __init__(self, sock, turns: _Turns) -> None:
        self._sock, self._turns = sock, turns

    def sendall(self, *args):
        self._turns.sending()
        return self._sock.sendall(*args)

    def recv(self, *args):
        self._turns.receiving()
        return self._sock.recv(*args)

    def recv_into(self, *args):
        self._turns.receiving()
        return self._sock.recv_into(*args)

    def __getattr__(self, name):
        return getattr(self._sock, name)


TURNS = _Turns()


class _CountingConnection(redis.Connection):
    """A real connection to a real server whose socket counts round trips."""

    def _connect(self):
        return _CountingSocket(super()._connect(), TURNS)


@pytest.mark.parametrize("extra_queues", [0, 200])
def test_the_collection_costs_one_round_trip_to_the_broker_whatever_the_queue_count(extra_queues):
    queues = list(QUEUE_NAMES) + [f"extra_{i}" for i in range(extra_queues)]
    with private_server() as server:
        collector = Collector(layout_for(server.port), {}, queues,
                              client_options={"connection_class": _CountingConnection})
        observer = server.client(0)
        for q in queues:  # one waiting message per queue, in its first sub-queue
            observer.lpush(q, message(time.time()))
        collector.collect()  # warm: the handshake and the script's first load are not the collection
        observer.config_resetstat()
        TURNS.count = 0
        collector.collect()
        round_trips = TURNS.count
        commands = {name.removeprefix("cmdstat_"): stats["calls"]
                    for name, stats in observer.info("commandstats").items()}
        collector.close()
    assert round_trips == 1
    # The server saw every read of that one trip, the per-list ones inside one script:
    # an LLEN per sub-queue, an LINDEX per non-empty one.
    assert commands["evalsha"] == 1
    assert commands["llen"] == 4 * len(queues)
    assert commands["lindex"] == len(queues)
    assert commands["hlen"] == 1 and commands["zrange"] == 1 and commands["hgetall"] == 4
    assert commands["info"] == 1  # the collector's (the observer's own is counted after it answered)


def test_a_heartbeat_that_is_not_a_json_object_is_left_out_not_the_collection(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client, "good@host")
    client.hset("fw:workers", mapping={"x@h": '"oops"', "y@h": "{not json", "z@h": '{"ts": "soon", "queues": []}'})
    reading = read_broker(client, KEYS, QUEUE_NAMES)
    assert list(reading.workers) == ["good@host"]
    assert sorted(reading.unreadable_workers) == ["x@h", "y@h", "z@h"]


def test_a_processed_counter_that_is_not_an_integer_is_left_out_not_the_collection(clean_redis):
    client = clean_redis.client(0)
    client.hset("fw:processed:total", mapping={"ai": "abc", "stats_cache": 7})
    reading = read_broker(client, KEYS, QUEUE_NAMES)
    assert reading.processed_total == {"stats_cache": 7}


def test_a_malformed_entry_is_logged_once_however_many_collections_see_it(clean_redis, caplog):
    client = clean_redis.client(0)
    # Once per process: a value no earlier run in this process has seen (mutmut runs pytest repeatedly).
    value = f"not-a-number-{uuid.uuid4().hex[:8]}"
    client.hset("fw:processed:total", "messagelog_customheaders", value)
    with caplog.at_level("WARNING", logger="flowwatch.collect"):
        for _ in range(3):
            read_broker(client, KEYS, QUEUE_NAMES)
    logged = [r.getMessage() for r in caplog.records if "messagelog_customheaders" in r.getMessage()]
    assert len(logged) == 1
    assert "fw:processed:total" in logged[0] and value in logged[0]


def test_the_collector_holds_one_client_per_server_and_none_unused(clean_redis):
    with private_server() as other:
        collector = Collector(layout_for(clean_redis.port, channels=other.url(3)), {}, QUEUE_NAMES)
        clients = [*collector.clients.values(), collector.broker_client]
        collector.close()
    assert len({id(c) for c in clients}) == len(collector.servers) == 2
    assert collector.broker_server not in collector.clients  # read through broker_client only


def test_an_error_text_that_quotes_a_password_is_redacted_in_the_reason():
    error = redis.ConnectionError("Error connecting to 127.0.0.1:1. auth 'pa55' refused.")
    assert describe_error(error, ["pa55", ""]) == "unreachable: auth '***' refused"
