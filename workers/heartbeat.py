"""Worker heartbeats and processed counters, written by Celery worker signals.

Imported by the Celery app (config/celery.py), so every worker connects these
handlers before it sends ``celeryd_init`` (importing this module again
elsewhere is harmless).
What they write into the broker Redis (names from :mod:`workers.collect_keys`,
behind kombu's ``global_keyprefix``):

``fw:workers`` (hash)
    field = worker name (``group@host``), value = JSON ``{name, group, host,
    pid, queues, instance, started_at, ts}``.  Written at ``worker_ready`` and
    then every :data:`HEARTBEAT_INTERVAL` seconds by a daemon thread; the field
    is removed at ``worker_shutdown``.  A worker is *alive* while ``now - ts
    <=`` :data:`HEARTBEAT_TTL`.  The hash itself expires
    :data:`WORKERS_KEY_TTL` seconds after the last heartbeat of any worker.
    ``instance`` is random per worker start (:func:`remember_worker_name`), so
    a worker that supervisor restarts under the same name is told apart from
    the one that crashed: locks carry it in their owner (:func:`lock_owner`).
``fw:held:<group@host#instance>`` (string) and ``fw:held`` (set)
    the delivery tags this worker holds (taken, not acknowledged), written
    every :data:`workers.handback.HOLD_INTERVAL` seconds by the same thread
    and expiring :data:`workers.handback.HOLD_TTL` seconds after the last
    write; the controller hands back what no live worker holds
    (workers/handback.py).
``fw:processed:<epoch minute>`` (hash)
    field = queue, value = tasks finished in that minute (``task_postrun``,
    keyed by the delivery's routing key and the minute the task finished in).
    Expires after :data:`PROCESSED_MINUTE_TTL`.
``fw:processed:total`` (hash)
    field = queue, value = tasks finished ever; the controller's "stalled"
    test watches it move.  Expires :data:`PROCESSED_TOTAL_TTL` after the last
    task.

The processed counters are counted in the process that ran the task and
written by one thread of that process at most every :data:`FLUSH_INTERVAL`
seconds, in one pipelined round trip for everything counted meanwhile, and
once more when the worker (or a prefork child) shuts down.  A task therefore
costs no round trip of its own (docs/performance.md, "Tasks"); a process
killed outright loses at most its last interval's counts.

Metrics must never fail a task or stop a worker: every write swallows Redis
errors and logs the first failure of an outage once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis
from celery.signals import celeryd_init, task_postrun, worker_process_shutdown, worker_ready, worker_shutdown

from workers import handback
from workers.collect_keys import BrokerKeys
from workers.log_once import LogOnce
from workers.queues import QUEUE_NAMES

logger = logging.getLogger("flowwatch.heartbeat")

HEARTBEAT_INTERVAL = 10.0
# Three missed beats: a worker busy in a long GIL-bound task still beats
# (the thread runs in the main process, tasks run in pool children).
HEARTBEAT_TTL = 30.0
WORKERS_KEY_TTL = 3600
PROCESSED_MINUTE_TTL = 180
PROCESSED_TOTAL_TTL = 7 * 24 * 3600
# Seconds between two writes of the processed counters by one process: well
# under the controller's tick (METRICS_CONTROLLER_INTERVAL, 5 s).
FLUSH_INTERVAL = 0.5
# Lock owners of workers are "<worker name>#<instance>" (workers/locks.py).
INSTANCE_SEPARATOR = "#"

_clients: dict[int, redis.Redis] = {}
_state: dict[str, Any] = {}
_outage = LogOnce()


def broker_client() -> redis.Redis:
    """One broker client per process (prefork children get their own)."""
    pid = os.getpid()
    if pid not in _clients:
        from workers.redis_clients import client_for

        _clients[pid] = client_for("broker")
    return _clients[pid]


def _keys(app: Any) -> BrokerKeys:
    return BrokerKeys.from_options(app.conf.broker_transport_options)


def _guarded(action: str, write) -> bool:
    """Run a metrics write; Redis trouble is logged once per outage, never raised.

    One outage for every kind of write: they all go to the same broker.
    """
    try:
        write()
    except (redis.RedisError, OSError) as exc:
        if _outage.started("broker"):
            logger.warning("metrics %s failed (further failures stay quiet until it works): %s",
                           action, type(exc).__name__)
        return False
    if _outage.ended("broker"):
        logger.info("metrics %s works again", action)
    return True


def heartbeat_payload(name: str, queues: list[str], started_at: float,
                      instance: str | None = None) -> dict[str, Any]:
    group, _, host = name.partition("@")
    return {"name": name, "group": group, "host": host or socket.gethostname(), "pid": os.getpid(),
            "queues": queues, "instance": instance, "started_at": started_at, "ts": time.time()}


def parse_heartbeat(raw: Any) -> dict[str, Any] | None:
    """A heartbeat payload as readers use it, or None when it is malformed.

    The hash is writable by anyone with broker access: a value that is not a
    JSON object with a finite number ``ts`` and a list of queue names must
    spoil that one entry, never the reader.
    """
    try:
        payload = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict):
        return None
    ts = payload.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return None
    queues = payload.get("queues", [])
    if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
        return None
    instance = payload.get("instance")
    if instance is not None and not isinstance(instance, str):
        return None
    return payload


def parse_heartbeats(mapping: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``HGETALL fw:workers`` as readers use it: (readable heartbeats by worker
    name, raw values of the unreadable ones by name)."""
    found: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, Any] = {}
    for raw_name, raw in (mapping if isinstance(mapping, dict) else {}).items():
        name = raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
        payload = parse_heartbeat(raw)
        if payload is None:
            unreadable[name] = raw
        else:
            found[name] = payload
    return found, unreadable


def write_heartbeat(client: redis.Redis, keys: BrokerKeys, payload: dict[str, Any]) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.workers, payload["name"], json.dumps(payload))
    pipe.expire(keys.workers, WORKERS_KEY_TTL)
    pipe.execute()


def remove_heartbeat(client: redis.Redis, keys: BrokerKeys, name: str) -> None:
    client.hdel(keys.workers, name)


def write_processed(client: redis.Redis, keys: BrokerKeys, counts: dict[tuple[int, str], int]) -> None:
    """Add ``counts`` ((epoch minute, queue) -> tasks finished) in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    totals: dict[str, int] = {}
    for (minute, queue), count in counts.items():
        pipe.hincrby(keys.processed_minute(minute), queue, count)
        totals[queue] = totals.get(queue, 0) + count
    for minute in {minute for minute, _ in counts}:
        pipe.expire(keys.processed_minute(minute), PROCESSED_MINUTE_TTL)
    for queue, count in totals.items():
        pipe.hincrby(keys.processed_total, queue, count)
    pipe.expire(keys.processed_total, PROCESSED_TOTAL_TTL)
    pipe.execute()


def count_processed(client: redis.Redis, keys: BrokerKeys, queue: str, now: float | None = None) -> None:
    """Count one finished task at once (what the batched counter writes, for one task)."""
    write_processed(client, keys, {(int((now or time.time()) // 60), queue): 1})


class ProcessedCounter:
    """Finished tasks of this process, written by a daemon thread at most every FLUSH_INTERVAL.

    ``add`` only counts in memory and wakes the thread; the thread waits
    :data:`FLUSH_INTERVAL` seconds (collecting whatever finishes meanwhile),
    then writes everything counted in one round trip.  ``flush`` writes at
    once (worker shutdown).
    """

    def __init__(self, keys: BrokerKeys) -> None:
        self.keys = keys
        self.lock = threading.Lock()
        self.pending: dict[tuple[int, str], int] = {}
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fw-processed", daemon=True)
        self.thread.start()

    def add(self, queue: str, now: float | None = None) -> None:
        key = (int((now or time.time()) // 60), queue)
        with self.lock:
            self.pending[key] = self.pending.get(key, 0) + 1
        self.wake.set()

    def flush(self) -> None:
        with self.lock:
            counts, self.pending = self.pending, {}
        if counts:
            _guarded("processed counter", lambda: write_processed(broker_client(), self.keys, counts))

    def _run(self) -> None:
        while True:
            self.wake.wait()
            time.sleep(FLUSH_INTERVAL)
            self.wake.clear()  # what is added from here on wakes the next round
            self.flush()


_counters: dict[int, ProcessedCounter] = {}
_counters_lock = threading.Lock()


def processed_counter(app: Any) -> ProcessedCounter:
    """This process's counter (a prefork child gets its own, with its own thread)."""
    pid = os.getpid()
    counter = _counters.get(pid)
    if counter is None:
        with _counters_lock:
            counter = _counters.get(pid) or _counters.setdefault(pid, ProcessedCounter(_keys(app)))
    return counter


def flush_processed() -> None:
    """Write what this process counted and has not written yet."""
    counter = _counters.get(os.getpid())
    if counter is not None:
        counter.flush()


def held_tags() -> set[str]:
    """Delivery tags of every request this worker process holds: reserved,
    running, or waiting for its ETA (all unacknowledged in the broker)."""
    from celery.worker import state

    for _attempt in range(3):  # the consumer thread may change the sets while we copy them
        try:
            requests = [*state.reserved_requests, *state.active_requests, *state.scheduled_requests]
            break
        except RuntimeError:
            continue
    else:
        requests = []
    tags = set()
    for request in requests:
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag is not None:
            tags.add(str(tag))
    return tags


class _Beater(threading.Thread):
    """Writes this worker's holdings every HOLD_INTERVAL seconds and its
    heartbeat every HEARTBEAT_INTERVAL seconds."""

    def __init__(self, keys: BrokerKeys, name: str, queues: list[str], instance: str) -> None:
        super().__init__(name="fw-heartbeat", daemon=True)
        self.keys, self.worker_name, self.queues, self.instance = keys, name, queues, instance
        self.started_at = time.time()
        self.stopping = threading.Event()

    def beat(self) -> bool:
        payload = heartbeat_payload(self.worker_name, self.queues, self.started_at, self.instance)
        return _guarded("heartbeat", lambda: write_heartbeat(broker_client(), self.keys, payload))

    @property
    def owner(self) -> str:
        return f"{self.worker_name}{INSTANCE_SEPARATOR}{self.instance}"

    def hold(self) -> bool:
        tags = held_tags()
        return _guarded("holdings", lambda: handback.write_holdings(broker_client(), self.keys, self.owner, tags))

    def run(self) -> None:
        last_beat = time.monotonic()
        while not self.stopping.wait(handback.HOLD_INTERVAL):
            self.hold()
            if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL:
                self.beat()
                last_beat = time.monotonic()


def new_instance() -> str:
    return secrets.token_hex(8)


def lock_owner() -> str | None:
    """``group@host#<instance>`` of this process's worker, for lock owners; None outside a worker.

    Pool children share their worker's owner: the heartbeat that proves them
    alive is the worker's.
    """
    name, instance = _state.get("name"), _state.get("instance")
    if not name:
        return None
    return f"{name}{INSTANCE_SEPARATOR}{instance}" if instance else name


@celeryd_init.connect
def remember_worker_name(sender: Any = None, **_: Any) -> None:
    """Before the pool forks, so that task processes know their worker's name
    and this start's instance id (a restarted worker gets a new one)."""
    if sender:
        _state.update(name=str(sender), instance=new_instance())


@worker_ready.connect
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    """``sender`` is the worker's Consumer: its hostname and queues."""
    name = sender.hostname
    queues = sorted(q for q in sender.app.amqp.queues.consume_from if q in QUEUE_NAMES)
    if _state.get("name") != name or not _state.get("instance"):
        _state.update(name=name, instance=new_instance())
    beater = _Beater(_keys(sender.app), name, queues, _state["instance"])
    beater.beat()
    beater.hold()
    beater.start()
    _state["beater"] = beater


@worker_shutdown.connect
def stop_heartbeat(sender: Any = None, **_: Any) -> None:
    flush_processed()  # the threads and solo pools count in this process
    beater: _Beater | None = _state.pop("beater", None)
    if beater is None:
        return
    beater.stopping.set()
    _guarded("heartbeat removal", lambda: remove_heartbeat(broker_client(), beater.keys, beater.worker_name))
    # Warm shutdown: kombu hands back what is unfinished; these tags are no orphans to settle.
    _guarded("holdings removal", lambda: handback.remove_holdings(broker_client(), beater.keys, beater.owner))


@task_postrun.connect
def count_finished_task(sender: Any = None, task: Any = None, **_: Any) -> None:
    task = task or sender
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key")
    if queue not in QUEUE_NAMES or task.request.is_eager:
        return
    processed_counter(task.app).add(queue)


@worker_process_shutdown.connect
def flush_child_counts(**_: Any) -> None:
    """A prefork child that ends (shutdown, max tasks, pool shrink) writes its last counts."""
    flush_processed()

