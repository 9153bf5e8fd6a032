"""What occupies each Redis: a bounded sample of its keyspace (docs/dashboard.md).

For every database a role lives in, keys are walked with ``SCAN COUNT`` and
measured with ``MEMORY USAGE`` and ``PTTL`` in pipelined batches, then sorted
into categories: broker queues, unacked, task results, each cache family,
locks, channels.  Keys without a TTL are grouped by prefix.

A large keyspace must never block Redis or the page: every database stops at
a key budget, the whole report at a time budget.  Each SCAN call and each
batch is small, so Redis serves other clients between them.  When a database
was not walked to the end, its figures are scaled up by DBSIZE / sampled and
flagged ``estimated``.

Infrastructure only: no Django import, so the controller or a management
command may use it as well as the page.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import redis

from config import redis_layout
from config.redis_layout import CACHE_KEY_PREFIX, CHANNELS_PREFIX
from workers import cache_families, queues
from workers.collect_keys import BrokerKeys

# django-redis builds keys as "<KEY_PREFIX>:<version>:<key>" (settings.CACHES).
RESULT_PREFIXES = ("celery-task-meta-", "celery-taskset-meta-", "chord-unlock-")

_CACHE_KEY = re.compile(rf"^{CACHE_KEY_PREFIX}:(\d+):([^:]+)")
# A trailing id (uuid, hex digest, number) that makes every key unique.
_TRAILING_ID = re.compile(r"^(.*?[-_.:])[0-9a-fA-F-]{8,}$|^(.*?[-_.:])\d+$")

BROKER_QUEUES = "broker queues"
UNACKED = "unacked"
BINDINGS = "kombu bindings"
RESULTS = "task results"
CHANNELS = "channels"
LOCKS = "locks"
HEARTBEATS = "worker heartbeats"
COUNTERS = "processed counters"
OTHER = "other"
# Categories whose keys are meant to live without a TTL.
PERMANENT_CATEGORIES = frozenset({BROKER_QUEUES, UNACKED, BINDINGS})

# Shown for a role's database even when empty, so "0 keys" is visible.
ROLE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "broker": (BROKER_QUEUES, UNACKED, LOCKS),
    "results": (RESULTS,),
    "cache": tuple(f"cache family {f.name}" for f in cache_families.FAMILIES),
    "channels": (CHANNELS,),
}


class Classifier:
    """Sorts key names into categories, with the broker's names from kombu's options."""

    def __init__(self, broker_keys: BrokerKeys | None = None) -> None:
        keys = broker_keys or BrokerKeys.from_options()
        self.queue_lists = {sub: name for name in queues.QUEUE_NAMES for sub in keys.sub_queues(name)}
        self.unacked = {keys.unacked_key, keys.unacked_index_key, keys.prefix + "unacked_mutex"}
        self.bindings = keys.prefix + "_kombu.binding."
        self.fw_broker = {
            keys.workers: HEARTBEATS, keys.lock_index: LOCKS,
        }
        self.lock_prefix = keys.lock("")
        self.counter_prefix = keys.fw("processed", "")

    def classify(self, key: str) -> str:
        """The category of one key, by name alone."""
        if key in self.queue_lists:
            return BROKER_QUEUES
        if key in self.unacked:
            return UNACKED
        if key in self.fw_broker:
            return self.fw_broker[key]
        for start, category in self._prefixes():
            if key.startswith(start):
                return category
        match = _CACHE_KEY.match(key)
        if match:
            name = match.group(2)
            if name in cache_families.BY_NAME:
                return f"cache family {name}"
            return f"cache, undeclared family {name}"
        return OTHER

    def _prefixes(self) -> tuple[tuple[str | tuple[str, ...], str], ...]:
        return ((self.lock_prefix, LOCKS), (self.counter_prefix, COUNTERS), (self.bindings, BINDINGS),
                (RESULT_PREFIXES, RESULTS), (CHANNELS_PREFIX, CHANNELS))

    def prefix(self, key: str) -> str:
        """A readable group for keys that differ only by an id."""
        if key in self.queue_lists:
            return self.queue_lists[key]
        if key in self.unacked or key in self.fw_broker:
            return key
        match = _CACHE_KEY.match(key)
        if match:
            return f"{CACHE_KEY_PREFIX}:{match.group(1)}:{match.group(2)}:*"
        id_match = _TRAILING_ID.match(key)
        if id_match:
            return (id_match.group(1) or id_match.group(2)) + "*"
        if ":" in key:
            return key.split(":", 1)[0] + ":*"
        return key[:80]

    def expected_without_ttl(self, category: str) -> bool:
        if category in PERMANENT_CATEGORIES or category == HEARTBEATS:
            return True
        family = category.removeprefix("cache family ")
        return family in cache_families.BY_NAME and cache_families.BY_NAME[family].permanent


@dataclass(frozen=True)
class Budget:
    keys_per_db: int = 5000  # keys measured per database at most
    seconds: float = 1.5  # for the whole report
    scan_count: int = 250  # SCAN COUNT hint and pipeline batch size


def decode(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")


@dataclass
class Tally:
    keys: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.keys += 1
        self.bytes += size


@dataclass
class DbSample:
    db: int
    roles: list[str]
    dbsize: int = 0
    sampled: int = 0
    complete: bool = False
    stopped: str | None = None  # "key budget" / "time budget" when not complete
    classifier: Classifier = field(default_factory=Classifier, repr=False)
    categories: dict[str, Tally] = field(default_factory=dict)
    no_ttl: dict[str, Tally] = field(default_factory=dict)
    no_ttl_category: dict[str, str] = field(default_factory=dict)

    def record(self, key: str, size: int, pttl: int) -> None:
        category = self.classifier.classify(key)
        self.categories.setdefault(category, Tally()).add(size)
        if pttl == -1:  # -1: no expiry; -2: gone since SCAN saw it
            group = self.classifier.prefix(key)
            self.no_ttl.setdefault(group, Tally()).add(size)
            self.no_ttl_category[group] = category
        self.sampled += 1

    def scale(self) -> float:
        if self.complete or not self.sampled:
            return 1.0
        return max(self.dbsize, self.sampled) / self.sampled

    def as_dict(self) -> dict[str, Any]:
        factor = self.scale()
        for category in _seeded(self.roles):
            self.categories.setdefault(category, Tally())
        return {
            "db": self.db,
            "roles": self.roles,
            "dbsize": self.dbsize,
            "sampled": self.sampled,
            "complete": self.complete,
            "stopped": self.stopped,
            "categories": _rows(self.categories, factor, key_name="name"),
            "no_ttl": [
                {**row, "expected": self.classifier.expected_without_ttl(self.no_ttl_category[row["prefix"]])}
                for row in _rows(self.no_ttl, factor, key_name="prefix")
            ],
        }


def _seeded(roles: list[str]) -> list[str]:
    return [category for role in roles for category in ROLE_CATEGORIES.get(role, ())]


def _rows(tallies: dict[str, Tally], factor: float, key_name: str) -> list[dict[str, Any]]:
    rows = [
        {key_name: name, "keys": round(t.keys * factor), "bytes": round(t.bytes * factor),
         "sampled_keys": t.keys, "estimated": factor != 1.0}
        for name, t in tallies.items()
    ]
    return sorted(rows, key=lambda row: (-row["bytes"], row[key_name]))


def sample_db(client: redis.Redis, sample: DbSample, budget: Budget, deadline: Deadline) -> DbSample:
    """Walk one database with SCAN until the end, the key budget or the deadline."""
    sample.dbsize = int(client.dbsize())
    cursor = 0
    while True:
        cursor, raw_keys = client.scan(cursor, count=budget.scan_count)
        raw_keys = raw_keys[: budget.keys_per_db - sample.sampled]
        if raw_keys:
            _measure(client, sample, raw_keys)
        if cursor == 0:
            sample.complete = True
            return sample
        if sample.sampled >= budget.keys_per_db:
            sample.stopped = "key budget"
            return sample
        if deadline.passed():
            sample.stopped = "time budget"
            return sample


def _measure(client: redis.Redis, sample: DbSample, raw_keys: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for raw in raw_keys:
        pipe.memory_usage(raw, samples=5)
        pipe.pttl(raw)
    answers = pipe.execute(raise_on_error=False)
    for index, raw in enumerate(raw_keys):
        size, pttl = answers[2 * index], answers[2 * index + 1]
        if isinstance(size, Exception) or size is None:  # expired between SCAN and now
            continue
        sample.record(decode(raw), int(size), int(pttl) if isinstance(pttl, int) else -2)


@dataclass(frozen=True)
class Target:
    """One database of one server, with the roles that live in it."""

    address: str
    db: int
    roles: tuple[str, ...]


def targets(layout: redis_layout.Layout) -> dict[str, list[Target]]:
    """Server address -> its databases that carry a role, in role order."""
    found: dict[str, dict[int, list[str]]] = {}
    for role in redis_layout.ROLES:
        if role not in layout.roles:
            continue
        role_url = layout.roles[role]
        host, port = role_url.server
        found.setdefault(f"{host}:{port}", {}).setdefault(role_url.db, []).append(role)
    return {
        address: [Target(address, db, tuple(roles)) for db, roles in dbs.items()]
        for address, dbs in found.items()
    }


ClientFactory = Callable[[str], redis.Redis]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """When the report's time budget runs out, on ``clock`` (monotonic seconds)."""

    at: float
    clock: Clock = time.monotonic

    def passed(self) -> bool:
        return self.clock() >= self.at


def report(layout: redis_layout.Layout | None = None, client_for: ClientFactory | None = None,
           budget: Budget = Budget(), broker_keys: BrokerKeys | None = None,
           clock: Clock = time.monotonic) -> dict[str, Any]:
    """The occupancy of every Redis server of the layout, within ``budget``.

    ``broker_keys`` names the broker's keys as the transport options do
    (settings.CELERY_BROKER_TRANSPORT_OPTIONS); kombu's defaults otherwise.
    ``clock`` measures the time budget (a test passes its own).
    """
    from workers import redis_clients

    layout = layout or redis_layout.resolve()
    classifier = Classifier(broker_keys)
    client_for = client_for or redis_clients.client
    started = clock()
    deadline = Deadline(started + budget.seconds, clock)
    servers = [
        _server_report(address, dbs, client_for, budget, deadline, classifier)
        for address, dbs in targets(layout).items()
    ]
    return {
        "generated_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "duration_ms": round((clock() - started) * 1000, 1),
        "budget": {"keys_per_db": budget.keys_per_db, "seconds": budget.seconds},
        "servers": servers,
    }


def _server_report(address: str, dbs: list[Target], client_for: ClientFactory, budget: Budget,
                   deadline: Deadline, classifier: Classifier) -> dict[str, Any]:
    roles = [role for target in dbs for role in target.roles]
    entry: dict[str, Any] = {"address": address, "roles": roles, "reachable": True, "error": None,
                             "used_memory": None, "maxmemory": None, "databases": []}
    try:
        memory = client_for(roles[0]).info("memory")
        entry["used_memory"] = memory.get("used_memory")
        entry["maxmemory"] = memory.get("maxmemory")
        for target in dbs:
            entry["databases"].append(_db_report(target, client_for, budget, deadline, classifier))
    except (redis.RedisError, OSError) as exc:
        entry.update(reachable=False, error=f"unreachable: {type(exc).__name__}")
    return entry


def _db_report(target: Target, client_for: ClientFactory, budget: Budget, deadline: Deadline,
               classifier: Classifier) -> dict[str, Any]:
    sample = DbSample(db=target.db, roles=list(target.roles), classifier=classifier)
    if deadline.passed():
        sample.stopped = "time budget"
        return sample.as_dict()
    return sample_db(client_for(target.roles[0]), sample, budget, deadline).as_dict()


class CachedReport:
    """The report, reused for ``max_age`` seconds within one process.

    Process-local on purpose: the page must say what occupies Redis even
    when the cache Redis is the one that is down.  The lock keeps a burst of
    requests down to one walk of the keyspace.
    """

    def __init__(self, max_age: float = 15.0, build: Callable[[], dict[str, Any]] = report,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.build = build
        self.clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._built_at = 0.0

    def get(self, refresh: bool = False) -> dict[str, Any]:
        with self._lock:
            if refresh or self._value is None or self.clock() - self._built_at >= self.max_age:
                self._value = self.build()
                self._built_at = self.clock()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value = None
