"""The per-list reads as one Lua script: the same readings, reloaded when forgotten, refused gracefully."""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis

from tests.test_metrics_support import KEYS, message, private_server
from workers.collect import _list_reads, read_broker
from workers.collect_script import SHA
from workers.queues import QUEUE_NAMES
from workers.routing import SENT_AT_HEADER

NOW = 1_800_000_000.0


def _awkward_broker(client) -> None:
    """Queues as the script must read them: priorities, odd messages, a key of the wrong type."""
    client.flushdb()
    client.lpush("ai", message(NOW - 30), message(NOW - 5))
    client.lpush("ai\x06\x169", message(NOW - 60.123456))
    client.lpush("stats_cache", "not json at all")
    client.lpush("stats_cache\x06\x163", json.dumps({"headers": None}))
    client.lpush("archive_data", json.dumps({"headers": {SENT_AT_HEADER: str(NOW - 7.5)}}))
    client.lpush("package_read", message(None))
    client.set("iflow_download", "not a list")


def _figures(reading) -> dict:
    return {q.name: (q.depth, q.by_priority, q.oldest_sent_at) for q in reading.queues.values()}


def _commands(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


def test_the_script_reads_what_a_broker_without_scripts_reads():
    with private_server() as scripted, private_server("--rename-command", "EVALSHA", "") as plain:
        _awkward_broker(scripted.client(0))
        _awkward_broker(plain.client(0))
        by_script = _figures(read_broker(scripted.client(0), KEYS, QUEUE_NAMES, now=NOW))
        by_pipeline = _figures(read_broker(plain.client(0), KEYS, QUEUE_NAMES, now=NOW))
        used_script = _commands(scripted.client(0)).get("evalsha", 0)
    assert used_script >= 1
    assert by_script == by_pipeline
    assert by_script["ai"] == (3, {0: 2, 3: 0, 6: 0, 9: 1}, pytest.approx(NOW - 60.123456, abs=1e-6))
    assert by_script["stats_cache"] == (2, {0: 1, 3: 1, 6: 0, 9: 0}, None)
    assert by_script["archive_data"][2] == NOW - 7.5
    assert by_script["package_read"] == (1, {0: 1, 3: 0, 6: 0, 9: 0}, None)
    assert by_script["iflow_download"][0] == 0


def test_a_script_flush_costs_one_reload_and_the_reading_stays_right():
    with private_server() as server:
        client = server.client(0)
        client.lpush("ai", message(NOW - 30))
        read_broker(client, KEYS, QUEUE_NAMES, now=NOW)
        client.script_flush()
        assert client.script_exists(SHA) == [False]
        reading = read_broker(client, KEYS, QUEUE_NAMES, now=NOW)
        loaded = client.script_exists(SHA)
    assert reading.queues["ai"].depth == 1
    assert reading.queues["ai"].oldest_sent_at == NOW - 30
    assert loaded == [True]


def test_after_a_broker_restart_the_same_client_loads_the_script_again():
    with private_server() as server:
        client = server.client(0)
        read_broker(client, KEYS, QUEUE_NAMES, now=NOW)
        server.restart()
        client.lpush("messagelog_read", message(NOW - 12))
        reading = read_broker(client, KEYS, QUEUE_NAMES, now=NOW)
        commands = _commands(client)
    assert reading.queues["messagelog_read"].depth == 1
    assert reading.queues["messagelog_read"].oldest_sent_at == NOW - 12
    assert commands["script|load"] == 1 and commands["evalsha"] == 2  # NOSCRIPT, then the read


@pytest.mark.parametrize("refused", [("EVALSHA",), ("EVAL", "EVALSHA"), ("SCRIPT",)])
def test_a_broker_that_refuses_scripts_is_read_list_by_list_with_one_warning(refused, caplog):
    renames = [arg for command in refused for arg in ("--rename-command", command, "")]
    with private_server(*renames) as server, caplog.at_level(logging.WARNING, logger="flowwatch.collect"):
        client = server.client(0)
        client.lpush("ai\x06\x166", message(NOW - 40))
        readings = [read_broker(client, KEYS, QUEUE_NAMES, now=NOW) for _ in range(3)]
        commands = _commands(client)
    warnings = [r.getMessage() for r in caplog.records if "refuses Lua scripts" in r.getMessage()]
    assert len(warnings) == 1
    assert all(r.queues["ai"].depth == 1 and r.queues["ai"].oldest_sent_at == NOW - 40 for r in readings)
    assert commands["llen"] == 3 * 4 * len(QUEUE_NAMES)  # three reads, list by list


def test_a_read_costs_no_json_parsing_on_the_client_while_the_script_runs(monkeypatch):
    import workers.collect_script as script

    def refuse(*_args):
        raise AssertionError("the client parsed a message")

    monkeypatch.setattr(script, "sent_at", refuse)
    with private_server() as server:
        client = server.client(0)
        client.lpush("ai", message(time.time()))
        reading = read_broker(client, KEYS, QUEUE_NAMES)
    assert reading.queues["ai"].oldest_sent_at is not None


class FlushedRightAfterLoad(redis.Redis):
    """A broker client whose every SCRIPT LOAD is undone at once, as if another
    client ran SCRIPT FLUSH between the load and the read that follows it."""

    loads = 0

    def script_load(self, script):
        sha = super().script_load(script)
        self.loads += 1
        self.script_flush()
        return sha


def test_a_script_flushed_between_its_load_and_the_read_is_read_without_it_once_and_not_refused(caplog):
    with private_server() as server, caplog.at_level(logging.WARNING, logger="flowwatch.collect"):
        client = FlushedRightAfterLoad(host="127.0.0.1", port=server.port, socket_timeout=5)
        client.lpush("ai", message(NOW - 30))
        reading = read_broker(client, KEYS, QUEUE_NAMES, now=NOW)
        commands = _commands(client)
        scripted_after = _list_reads(client).scripted
    assert (reading.queues["ai"].depth, reading.queues["ai"].oldest_sent_at) == (1, NOW - 30)
    assert client.loads == 1  # loaded once: a second NOSCRIPT reads list by list instead of loading again
    assert commands["evalsha"] == 2 and commands["llen"] == 4 * len(QUEUE_NAMES)
    assert scripted_after  # a flush is not a refusal: the next tick uses the script again
    assert not [r for r in caplog.records if "refuses Lua scripts" in r.getMessage()]
