"""Redis server figures against private servers: evictions, rejected connections, memory, policy."""

from __future__ import annotations

import socket

import pytest

from apps.metrics.controller import Controller
from tests.test_metrics_support import layout_for, private_server, role

pytestmark = pytest.mark.django_db


def controller_with_cache_on(server, suite) -> Controller:
    """Broker, results and channels on the suite's Redis; the cache role on ``server``."""
    return Controller(layout=layout_for(suite.port, cache=server.url(2)), transport_options={},
                      publish=False, send_tasks=False)


def overfill(client, count: int = 3000) -> None:
    """Write ~6 MB in 2 KB keys into a 2 MB server: LRU evicts as it goes."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"k{i}", "x" * 2048)
    pipe.execute()


def one_connection_attempt(port: int) -> bytes:
    """Exactly one connection (redis-py would retry and be rejected several times)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(200)


def tick(controller: Controller) -> dict:
    assert controller.tick()
    return controller.last_snapshot


def test_a_real_eviction_raises_evicted_keys_delta_and_the_status(clean_redis):
    with private_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        controller = controller_with_cache_on(server, clean_redis)
        before = role(tick(controller), "cache")
        assert (before["evicted_keys_delta"], before["status"]) == (0, "ok")
        client = server.client(2)
        overfill(client)
        assert client.info("stats")["evicted_keys"] >= 10
        after = role(tick(controller), "cache")
        controller.leader.release()
    assert after["evicted_keys_delta"] >= 10
    assert after["status"] == "critical"
    assert any(r.startswith("evicted keys ") for r in after["reasons"])
    assert after["maxmemory"] == 2 * 1024 * 1024 and after["no_maxmemory"] is False
    assert role(controller.last_snapshot, "broker")["status"] == "ok"  # another server, untouched


def test_the_eviction_delta_is_the_increase_since_the_previous_sample(clean_redis):
    with private_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        controller = controller_with_cache_on(server, clean_redis)
        tick(controller)
        overfill(server.client(2))
        tick(controller)
        assert role(tick(controller), "cache")["evicted_keys_delta"] == 0  # nothing new since
        controller.leader.release()


def test_a_rejected_connection_makes_the_role_critical(clean_redis):
    with private_server("--maxclients", "2") as server:
        controller = controller_with_cache_on(server, clean_redis)
        assert role(tick(controller), "cache")["status"] == "ok"  # holds 1 of the 2 slots
        other = server.client(2)
        other.ping()  # the 2nd slot
        assert b"max number of clients" in one_connection_attempt(server.port)
        cache = role(tick(controller), "cache")
        other.close()
        controller.leader.release()
    assert cache["rejected_connections_delta"] == 1
    assert cache["status"] == "critical"
    assert cache["reasons"] == ["rejected connections 1 since the previous sample >= critical 1"]
    assert cache["maxclients"] == 2


def test_memory_percent_is_of_maxmemory_or_of_system_memory_flagged(clean_redis):
    with private_server("--maxmemory", "100mb") as server:
        controller = controller_with_cache_on(server, clean_redis)
        snapshot = tick(controller)
        controller.leader.release()
    cache, broker = role(snapshot, "cache"), role(snapshot, "broker")
    assert cache["memory_percent"] == pytest.approx(cache["used_memory"] * 100 / (100 * 1024 * 1024), abs=0.01)
    assert cache["no_maxmemory"] is False
    assert broker["maxmemory"] == 0 and broker["no_maxmemory"] is True
    assert 0 < broker["memory_percent"] < 100


def test_a_broker_that_may_evict_is_critical_and_says_why(clean_redis):
    with private_server("--maxmemory-policy", "allkeys-lru") as server:
        controller = Controller(layout=layout_for(server.port), transport_options={}, publish=False,
                                send_tasks=False)
        snapshot = tick(controller)
        controller.leader.release()
    assert role(snapshot, "broker")["status"] == "critical"
    assert role(snapshot, "broker")["reasons"] == [
        "maxmemory-policy allkeys-lru on the broker: evicted keys are lost tasks"]
    assert role(snapshot, "cache")["status"] == "ok"  # the same policy is fine for a cache


def test_the_persistence_uptime_and_run_id_are_reported(clean_redis):
    snapshot = tick(Controller(publish=False, send_tasks=False))
    broker = role(snapshot, "broker")
    assert broker["persistence"] == {"save": "", "appendonly": False, "persistent": False}
    assert len(broker["run_id"]) == 40
    assert broker["uptime_seconds"] >= 0
    assert broker["connected_clients"] >= 1


def test_a_controller_that_leads_again_takes_a_fresh_eviction_baseline(clean_redis):
    with private_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        first = controller_with_cache_on(server, clean_redis)
        second = controller_with_cache_on(server, clean_redis)
        tick(first)  # its baseline: 0 evicted
        first.leader.release()
        tick(second)
        assert first.tick() is False  # stands by while the other leads
        overfill(server.client(2))
        assert role(tick(second), "cache")["evicted_keys_delta"] >= 10  # reported by the leader of the time
        tick(second)
        second.leader.release()
        cache = role(tick(first), "cache")
        first.leader.release()
    assert cache["evicted_keys_delta"] == 0  # not everything since its own old sample
