"""The broker and INFO readers behind the controller (docs/metrics.md, "One tick").

:func:`read_broker` costs ONE pipelined round trip to the broker Redis, how
many queues there are notwithstanding; it reads, in this order:

* per priority sub-queue of every declared queue (kombu's names, see
  :mod:`workers.collect_keys`) its length — the depth is their sum — and the
  ``fw_sent_at`` header (stamped at publish by :mod:`workers.routing`) of its
  oldest waiting message (``LINDEX key -1``: kombu pushes on the left and
  pops on the right), which gives its age.  These reads run as one Lua
  script in the broker, which decodes the header there
  (:mod:`workers.collect_script`); a broker that refuses scripts gets one
  ``LLEN`` and one ``LINDEX`` per list in the same pipeline instead;
* ``HLEN unacked`` and the first entry of the ``unacked_index`` sorted set
  (score = delivery time) — messages taken by a worker and not yet acked;
* ``HGETALL`` of the worker heartbeats and of the processed counters
  (:mod:`workers.heartbeat`);
* ``INFO`` and ``CONFIG GET save`` of the broker server itself.

:func:`read_server` then costs one round trip (``INFO`` + ``CONFIG GET
save``) per other distinct server of the four roles; :class:`Collector` reads them
in parallel so that several dead servers cost one connect timeout, not several.

Nothing here knows a threshold or a Django model: it returns readings.

The ``fw:`` hashes are writable by anything with broker access: an entry that
cannot be read (a heartbeat that is not a JSON object, a counter that is not
an integer) is left out of the reading and logged once; it spoils that one
figure, never the collection.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import redis

from config.redis_layout import Layout, redact
from workers.collect_keys import BrokerKeys
from workers.collect_script import ListReads, Reads, is_noscript
from workers.heartbeat import parse_heartbeats
from workers.log_once import LogOnce
from workers.routing import SENT_AT_HEADER

logger = logging.getLogger("flowwatch.collect")


@dataclass
class QueueReading:
    name: str
    depth: int
    by_priority: dict[int, int]  # priority step -> messages waiting in that sub-queue
    oldest_sent_at: float | None  # publish time of the oldest waiting message


@dataclass
class ServerReading:
    """INFO of one Redis server, or why it could not be read."""

    server: tuple[str, int]
    roles: list[str]
    reachable: bool
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    save: str | None = None  # CONFIG GET save; None when CONFIG is refused (managed Redis)
    read_at: float = 0.0


@dataclass
class BrokerReading:
    queues: dict[str, QueueReading]
    unacked_count: int
    unacked_oldest_at: float | None
    workers: dict[str, dict[str, Any]]  # heartbeat payloads by worker name
    processed_this_minute: dict[str, int]
    processed_last_minute: dict[str, int]
    processed_total: dict[str, int]
    server: ServerReading
    read_at: float
    unreadable_workers: list[str] = field(default_factory=list)  # fw:workers fields left out


@dataclass
class Collection:
    """One collection: the broker's reading and one reading per distinct server."""

    broker: BrokerReading | None
    servers: dict[tuple[str, int], ServerReading]
    duration_ms: float


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """A short reason without URLs' passwords, e.g. ``unreachable: Connection refused``."""
    text = str(exc).strip() or type(exc).__name__
    match = re.search(r"connecting to \S+?\.\s+(.*)", text)
    if match:
        text = match.group(1)
    text = redact(text, secrets).rstrip(".")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return f"unreachable: {text}"
    return f"error: {text}"


_malformed = LogOnce()


def _skip(what: str) -> None:
    """Leave a malformed entry out; logged once per process, not every tick it stays."""
    if _malformed.started(what):
        logger.warning("skipped a malformed entry: %s (it is left out of the metrics)", what)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _ints(mapping: Any, key: str) -> dict[str, int]:
    """A counter hash; a field whose value is not an integer is skipped."""
    if not isinstance(mapping, dict):
        return {}
    found = {}
    for field_name, value in mapping.items():
        try:
            found[_text(field_name)] = int(value)
        except (ValueError, TypeError):
            _skip(f"{key} field {_text(field_name)!r}: {_text(value)[:80]!r} is not an integer")
    return found


def _workers(mapping: Any, key: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(readable heartbeats by worker name, names of unreadable entries)."""
    found, unreadable = parse_heartbeats(mapping)
    for name, raw in unreadable.items():
        _skip(f"{key} field {name!r}: {_text(raw)[:80]!r} is not a heartbeat")
    return found, list(unreadable)


def _save(reply: Any) -> str | None:
    if isinstance(reply, dict):
        value = reply.get("save", reply.get(b"save"))
        return value.decode() if isinstance(value, bytes) else value
    return None


def read_broker(client: redis.Redis, keys: BrokerKeys, queues: Iterable[str],
                server: tuple[str, int] = ("", 0), roles: list[str] | None = None,
                now: float | None = None) -> BrokerReading:
    """Read every queue, unacked, heartbeats, counters and INFO in ONE round trip.

    After a broker restart (the script forgotten) or on a broker that refuses
    scripts, that tick alone costs one or two more.
    Raises redis.RedisError / OSError when the broker cannot be reached.
    """
    queues = tuple(queues)
    now = time.time() if now is None else now
    minute = int(now // 60)
    lists, per_queue = _lists(keys, queues)
    steps = _steps(keys)
    per_list, rest = _execute(client, keys, lists, per_queue, minute, _list_reads(client))
    unacked, oldest, workers, this_minute, last_minute, total, info, save = rest
    heartbeats, unreadable = _workers(workers, keys.workers)
    return BrokerReading(
        queues={q: _queue_reading(q, steps, *read) for q, read in zip(queues, per_list)},
        unacked_count=unacked if isinstance(unacked, int) else 0,
        unacked_oldest_at=float(oldest[0][1]) if isinstance(oldest, list) and oldest else None,
        workers=heartbeats,
        processed_this_minute=_ints(this_minute, keys.processed_minute(minute)),
        processed_last_minute=_ints(last_minute, keys.processed_minute(minute - 1)),
        processed_total=_ints(total, keys.processed_total),
        server=ServerReading(server, roles or ["broker"], True, info=info if isinstance(info, dict) else {},
                             save=_save(save), read_at=now),
        read_at=now,
        unreadable_workers=unreadable,
    )


@functools.lru_cache(maxsize=8)
def _lists(keys: BrokerKeys, queues: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """Every sub-queue in one flat tuple, queue after queue, and how many each queue has: named once."""
    per_queue = len(_steps(keys))
    lists = tuple(key for q in queues for key in keys.sub_queues(q))
    if len(lists) != per_queue * len(queues):  # kombu names one list per distinct step
        raise ValueError(f"priority steps {keys.priority_steps} do not name {per_queue} lists per queue")
    return lists, per_queue


_READS: "weakref.WeakKeyDictionary[redis.Redis, ListReads]" = weakref.WeakKeyDictionary()
_READS_LOCK = threading.Lock()


def _list_reads(client: redis.Redis) -> ListReads:
    """One ListReads per client: whether scripts are refused is a fact of that broker."""
    with _READS_LOCK:
        reads = _READS.get(client)
        if reads is None:
            reads = _READS[client] = ListReads(SENT_AT_HEADER)
        return reads


def _execute(client: redis.Redis, keys: BrokerKeys, lists: tuple[str, ...], per_queue: int, minute: int,
             reads: ListReads, scripted: bool | None = None, loaded: bool = False) -> tuple[Reads, list[Any]]:
    """The one pipeline; again with the script loaded after NOSCRIPT, or without it when refused."""
    scripted = reads.scripted if scripted is None else scripted
    pipe = client.pipeline(transaction=False)
    count = reads.queue(pipe, lists, per_queue, scripted)
    pipe.hlen(keys.unacked_key)
    pipe.zrange(keys.unacked_index_key, 0, 0, withscores=True)
    pipe.hgetall(keys.workers)
    pipe.hgetall(keys.processed_minute(minute))
    pipe.hgetall(keys.processed_minute(minute - 1))
    pipe.hgetall(keys.processed_total)
    pipe.info()
    pipe.config_get("save")
    # raise_on_error=False: a refused CONFIG (managed Redis) or a key of the
    # wrong type spoils one answer, not the collection; a dead socket still raises.
    replies = pipe.execute(raise_on_error=False)
    if scripted and isinstance(replies[0], Exception):
        if is_noscript(replies[0]) and not loaded and reads.load(client):
            return _execute(client, keys, lists, per_queue, minute, reads, True, loaded=True)
        if not is_noscript(replies[0]):
            reads.refuse(replies[0])
        return _execute(client, keys, lists, per_queue, minute, reads, False)
    return reads.parse(replies[:count], lists, per_queue, scripted), replies[count:]


@functools.lru_cache(maxsize=8)
def _steps(keys: BrokerKeys) -> tuple[int, ...]:
    return tuple(dict.fromkeys(keys.priority_steps))


def _queue_reading(queue: str, steps: tuple[int, ...], lengths: list[int], oldest: float | None) -> QueueReading:
    return QueueReading(queue, sum(lengths), dict(zip(steps, lengths)), oldest)


def read_server(client: redis.Redis, server: tuple[str, int], roles: list[str]) -> ServerReading:
    """INFO and CONFIG GET save of one server in one round trip; never raises."""
    now = time.time()
    try:
        pipe = client.pipeline(transaction=False)
        pipe.info()
        pipe.config_get("save")
        info, save = pipe.execute(raise_on_error=False)
    except (redis.RedisError, OSError) as exc:
        return ServerReading(server, roles, False, error=describe_error(exc, _passwords(client)), read_at=now)
    if isinstance(info, Exception):
        return ServerReading(server, roles, False, error=describe_error(info, _passwords(client)), read_at=now)
    return ServerReading(server, roles, True, info=info, save=_save(save), read_at=now)


def _passwords(client: redis.Redis) -> list[str]:
    password = client.connection_pool.connection_kwargs.get("password")
    return [password] if password else []


class Collector:
    """Reads the broker and every other distinct server of a layout.

    Holds one client per server for its lifetime (the broker's server is read
    through :attr:`broker_client`, the others through :attr:`clients`):
    redis-py reconnects a broken connection by itself at the next command,
    which is how the controller recovers after a Redis restart without any
    special code.
    """

    def __init__(self, layout: Layout, transport_options: Mapping[str, Any] | None,
                 queues: Iterable[str], client_options: Mapping[str, Any] | None = None) -> None:
        from workers.redis_clients import client_for

        self.layout = layout
        self.keys = BrokerKeys.from_options(transport_options)
        self.queues = tuple(queues)
        self.servers = layout.servers()
        broker = layout.roles.get("broker")
        self.broker_server = broker.server if broker else None
        self.broker_client = client_for("broker", layout, **(client_options or {})) if broker else None
        self.clients: dict[tuple[str, int], redis.Redis] = {
            server: client_for(roles[0], layout, **(client_options or {}))
            for server, roles in self.servers.items() if server != self.broker_server
        }
        # Kept for the collector's life: the other servers are read beside the
        # broker, so several dead servers cost one connect timeout, not several.
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.clients)), thread_name_prefix="collect")

    def collect(self) -> Collection:
        started = time.monotonic()
        others = [s for s in self.servers if s != self.broker_server]
        if others:
            futures = {s: self._pool.submit(read_server, self.clients[s], s, self.servers[s]) for s in others}
            broker, broker_server = self._read_broker() if self.broker_client else (None, None)
            readings = {s: f.result() for s, f in futures.items()}
        else:  # the usual small installation: one server, nothing to wait for in parallel
            broker, broker_server = self._read_broker() if self.broker_client else (None, None)
            readings = {}
        if broker_server is not None:
            readings[self.broker_server] = broker_server
        ordered = {s: readings[s] for s in self.servers if s in readings}
        return Collection(broker, ordered, round((time.monotonic() - started) * 1000, 2))

    def _read_broker(self) -> tuple[BrokerReading | None, ServerReading]:
        roles = self.servers[self.broker_server]
        try:
            reading = read_broker(self.broker_client, self.keys, self.queues, self.broker_server, roles)
        except (redis.RedisError, OSError) as exc:
            error = describe_error(exc, _passwords(self.broker_client))
            return None, ServerReading(self.broker_server, roles, False, error=error, read_at=time.time())
        return reading, reading.server

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in [*self.clients.values(), self.broker_client]:
            if client is not None:
                client.close()
