"""Helpers shared by the metrics and controller tests (this module holds no test)."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from config import redis_layout
from tests.servers import RedisServer
from workers.collect_keys import BrokerKeys
from workers.heartbeat import heartbeat_payload, write_heartbeat
from workers.queues import QUEUE_NAMES
from workers.routing import SENT_AT_HEADER

KEYS = BrokerKeys.from_options({})


def layout_for(port: int, **urls: str) -> redis_layout.Layout:
    """A layout with every role on 127.0.0.1:``port`` (dbs 0-3) unless ``urls`` says otherwise."""
    env = {"REDIS_LOCAL": "false", "REDIS_LOCAL_PORT": str(port)}
    names = {"broker": "CELERY_BROKER_URL", "results": "CELERY_RESULT_BACKEND",
             "cache": "REDIS_CACHE_URL", "channels": "CHANNELS_REDIS_URL"}
    env.update({names[role]: url for role, url in urls.items()})
    layout = redis_layout.resolve(env)
    assert layout.ok, layout.problems
    return layout


def message(sent_at: float | None = None) -> str:
    """A raw kombu message as the Redis transport stores it."""
    headers = {} if sent_at is None else {SENT_AT_HEADER: sent_at}
    return json.dumps({"body": "", "headers": headers, "properties": {"priority": 0}})


def fill(client, key: str, count: int, sent_at: float | None = None) -> None:
    """LPUSH ``count`` messages (in chunks, so 10000 cost a few round trips)."""
    raw = message(sent_at if sent_at is not None else time.time())
    for start in range(0, count, 5000):
        client.lpush(key, *([raw] * min(5000, count - start)))


def fake_worker(client, name: str = "fake@host", queues: tuple[str, ...] = QUEUE_NAMES,
                age: float = 0.0, keys: BrokerKeys = KEYS, instance: str | None = None) -> dict[str, Any]:
    """A heartbeat as a worker writes it, ``age`` seconds old."""
    payload = heartbeat_payload(name, list(queues), time.time())
    if instance is not None:
        payload["instance"] = instance
    payload["ts"] -= age
    write_heartbeat(client, keys, payload)
    return payload


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def private_server(*extra: str) -> RedisServer:
    """A server of the test's own, started and closed by ``with private_server() as s:``."""
    return RedisServer(*extra)


def queue(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in snapshot["queues"] if q["name"] == name)


def role(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in snapshot["redis"] if r["role"] == name)
