"""The controller loop (DESIGN §4): collect, evaluate, publish, record, clean.

One :class:`Controller` runs :meth:`Controller.tick` every ``interval``
seconds.  A tick is a row of small steps, each returning whether it found work
(STYLE §7).  Nothing in a tick may end the loop: Redis or the database going
away turns into "unreachable" entries in the snapshot, a capped backoff and,
once they answer again, recovery without a restart.

Only the holder of the leader lock (``fw:lock:controller:leader`` in the
broker Redis) acts; other controllers stand by and take over within one lock TTL.
A controller that (re)gains the lock reloads its memory from the database
first: another controller may have led and recorded events meanwhile.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Callable, Iterable, Mapping

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from apps.metrics import snapshot as snapshots
from apps.metrics.evaluate import (CLEAR_MARGIN, CLEAR_TICKS, Hysteresis, QueueFacts, ServerFacts, Thresholds,
                                   queue_status, redis_status)
from apps.metrics.models import (CRITICAL, OK, WARN, MetricEvent, QueueSample, QueueThreshold, RedisSample,
                                 RedisServerState, cMetricSettings, iso)
from config.redis_layout import ROLES, Layout
from workers.collect import BrokerReading, Collection, Collector, ServerReading
from workers.heartbeat import HEARTBEAT_TTL
from workers.collect_keys import BrokerKeys
from workers.locks import Lock, clean_dead_locks, owner_of
from workers.queues import BY_QUEUE, QUEUE_NAMES

logger = logging.getLogger("flowwatch.controller")

MAX_BACKOFF = 30.0
# 2 ** 16 times any interval is far past MAX_BACKOFF; without a cap,
# 2 ** failures overflows a float after ~1024 failing ticks.
MAX_BACKOFF_EXPONENT = 16
STALL_TICKS = 6
EVENTS_IN_SNAPSHOT = 50
WORKER_FORGET_SECONDS = 3600
LEADER_LOCK = "controller:leader"


class LeaderLock:
    """The lock ``fw:lock:controller:leader`` (a :class:`workers.locks.Lock`
    owned by ``host:pid``), taken or extended every tick.

    While the broker is unreachable nobody can take or renew the lock: the
    controller that held it last keeps acting, one that last saw another
    holder keeps standing by, and one that never saw any holder acts (it
    cannot know better, and somebody must report the outage).
    """

    def __init__(self, client: redis.Redis | None, keys: BrokerKeys, ttl: float) -> None:
        self.lock = Lock(client, keys, LEADER_LOCK, ttl, owner=f"{socket.gethostname()}:{os.getpid()}") \
            if client is not None else None
        self.held = False
        self.gained = False  # taken by the last claim() (was not held before it)
        self.last_seen: str | None = None  # "mine", "other" or None (never saw a holder)
        self.holder: str | None = None

    @property
    def value(self) -> str | None:
        return self.lock.value if self.lock else None

    def claim(self) -> bool:
        self.gained = False
        if self.lock is None:
            return True
        try:
            if self.held and not self.lock.extend():
                self.held = False
                logger.warning("leader lock lost (expired or taken over)")
            if not self.held:
                self.held = self.gained = self.lock.acquire()
                if self.held:
                    logger.info("this controller is now the leader (%s)", self.lock.owner)
            if not self.held:
                self.holder = owner_of(self.lock.client.get(self.lock.key))
        except (redis.RedisError, OSError):
            return self.last_seen != "other"
        self.last_seen = "mine" if self.held else "other"
        return self.held

    def release(self) -> None:
        if self.lock is None or not self.held:
            return
        try:
            self.lock.release()
        except (redis.RedisError, OSError):
            pass  # it expires by itself
        self.held = False


@dataclass
class _ServerMemory:
    run_id: str | None
    evicted: int | None = None  # None: no sample to compare with (yet, or since leadership returned)
    rejected: int | None = None
    restarted_at: float | None = None  # the last restart (changed run_id) a controller recorded

    def delta(self, name: str, value: int, restarted: bool) -> int:
        """Increase since the previous sample; a restart resets Redis' counters to 0."""
        if restarted:
            return value
        previous = getattr(self, name)
        return 0 if previous is None else max(0, value - previous)


@dataclass
class _Stall:
    total: int | None = None
    ticks: int = 0
    since: float | None = None


class Controller:
    def __init__(self, *, layout: Layout | None = None, transport_options: Mapping[str, Any] | None = None,
                 queues: Iterable[str] = QUEUE_NAMES, interval: float | None = None,
                 clear_ticks: int = CLEAR_TICKS, stall_ticks: int = STALL_TICKS,
                 max_backoff: float = MAX_BACKOFF, publish: bool = True, send_tasks: bool = True) -> None:
        self.layout = layout or settings.REDIS_LAYOUT
        if transport_options is None:
            transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        self.collector = Collector(self.layout, transport_options, queues)
        self.keys = self.collector.keys
        self.interval = interval = settings.METRICS_CONTROLLER_INTERVAL if interval is None else interval
        self.stall_ticks = stall_ticks
        self.max_backoff = max(max_backoff, interval)
        self.publish_enabled = publish
        self.send_tasks = send_tasks
        self.hysteresis = Hysteresis(clear_ticks)
        # The lock outlives a full backoff, so a leader in trouble is not
        # replaced merely because it sleeps longer between ticks.
        self.leader_ttl = max(3 * interval, self.max_backoff + interval)
        self.leader = LeaderLock(self.collector.broker_client, self.keys, ttl=self.leader_ttl)
        self.last_acted: float | None = None  # time.monotonic() of the last tick that acted
        self.stood_by = False  # a tick stood by since this controller last acted
        self.stopping = threading.Event()
        self.failures = 0  # consecutive ticks that failed or found the broker unreachable
        self.tick_failed = False  # the last tick raised
        self.ticks = 0
        self.thresholds = Thresholds()
        self.database: dict[str, Any] = {"reachable": True, "error": None}
        self.servers: dict[tuple[str, int], _ServerMemory] = {}
        self.stalls: dict[str, _Stall] = {}
        self.reachable: dict[str, bool] = {}
        self.last_depth: tuple[int, int] | None = None  # (queued, unacked) at the previous tick
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=EVENTS_IN_SNAPSHOT)
        self.unsaved: deque[MetricEvent] = deque(maxlen=1000)
        self.pending_alerts: list[int] = []
        self.pending_rebuild = False
        self.last_snapshot: dict[str, Any] | None = None
        self.state_loaded = False
        self._publish_failed: set[str] = set()
        # After the broker restarts or returns, workers need one heartbeat
        # interval to be seen again: until then "no consumer" is not asserted.
        self.heartbeat_grace_until = 0.0

    # -- the loop -------------------------------------------------------------
    def run(self, once: bool = False) -> None:
        previous_handlers = self._install_signal_handlers()
        logger.info("controller started: interval %.1f s, %d queues, %d Redis servers",
                    self.interval, len(self.collector.queues), len(self.collector.servers))
        try:
            while not self.stopping.is_set():
                self.safe_tick()
                if once:
                    break
                self.stopping.wait(self.next_delay())
        finally:
            self.leader.release()
            self.collector.close()
            snapshots.close_group_publisher()
            for signum, handler in previous_handlers.items():
                if handler is not None:  # None: installed outside Python, nothing to put back
                    signal.signal(signum, handler)
            logger.info("controller stopped")

    def safe_tick(self) -> bool:
        """A tick that never raises: a surprise is logged and backed off from."""
        try:
            acted = self.tick()
        except Exception:
            logger.exception("controller tick failed; backing off")
            self.failures += 1
            self.tick_failed = True
            return False
        self.tick_failed = False
        return acted

    def next_delay(self) -> float:
        """The interval; doubled per failing tick, capped, while the broker is away or ticks fail."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** min(self.failures, MAX_BACKOFF_EXPONENT), self.max_backoff)

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM and SIGINT stop the loop; returns the handlers to put back after it."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        for signum in previous:
            signal.signal(signum, self.stop)
        return previous

    def tick(self) -> bool:
        """One pass; True when this controller acted (it is the leader)."""
        self.ticks += 1
        if not self.claim_leadership():
            self.failures = 0
            return False
        self.load_state()
        self.load_thresholds()
        collection = self.collector.collect()
        snapshot, changes = self.evaluate(collection)
        self.record_events(changes)
        snapshot["events"] = list(self.recent_events)
        self.publish(snapshot)
        self.roll_up(snapshot)
        broker = collection.broker
        self.send_alerts(broker is not None)
        self.clean_locks(broker)
        self.last_snapshot = snapshot
        # Back off only while the broker — what the loop is about — is away.
        # Another role that does not answer costs one connect timeout per tick
        # (read in parallel with the broker) and is retried every tick.
        self.failures = 0 if broker is not None else self.failures + 1
        return True

    def look(self) -> dict[str, Any]:
        """One collection evaluated against fresh thresholds: no lock, no events, no publishing."""
        try:
            self.load_thresholds()
            snapshot, _changes = self.evaluate(self.collector.collect())
            snapshot["events"] = self._db(
                lambda: [e.as_dict() for e in MetricEvent.objects.all()[:EVENTS_IN_SNAPSHOT]], [])
            snapshot["database"] = dict(self.database)
            return snapshot
        finally:
            self.collector.close()

    # -- steps ----------------------------------------------------------------
    def claim_leadership(self) -> bool:
        leader = self.leader.claim()
        if not leader:
            if self.ticks == 1:
                logger.info("standing by: another controller holds the leader lock (%s)", self.leader.holder)
            self.stood_by = True
            return False
        if self.leader.gained and self._another_may_have_led():
            self.forget_memory()
        self.stood_by, self.last_acted = False, time.monotonic()
        return True

    def _another_may_have_led(self) -> bool:
        """Since this controller last acted, it stood by, or its lock could have
        expired and been taken (a lock merely lost with a restarted broker and
        taken back at once was nobody else's)."""
        return (self.stood_by or self.last_acted is None
                or time.monotonic() - self.last_acted > self.leader_ttl)

    def forget_memory(self) -> None:
        """Leadership came back: what this controller remembers may be stale.

        Another controller may have led meanwhile and recorded status changes
        and restarts; the counters it compared with are old. Statuses, run_ids
        and the last depth are read again from the database (load_state); the
        evicted/rejected baselines and the stall counts start afresh.
        """
        self.state_loaded = False
        self.servers.clear()
        self.stalls.clear()
        self.last_depth = None

    def load_state(self) -> bool:
        """Last statuses, run_ids, restarts and depth from the database, at start and
        whenever leadership returns, so that a controller neither repeats alerts
        nor misses a Redis restart. Until the database answers, memory stands."""
        if self.state_loaded:
            return False
        found = self._db(self._read_state, None)
        if found is None:
            return False
        statuses, reachable, servers, depth, events = found
        self._overlay_unsaved(statuses, reachable)
        unsaved = [e for e in self.recent_events if e["id"] is None]
        self.recent_events = deque((unsaved + events)[:EVENTS_IN_SNAPSHOT], maxlen=EVENTS_IN_SNAPSHOT)
        self.hysteresis = Hysteresis(self.hysteresis.clear_ticks, statuses)
        self.reachable = reachable
        for server, (run_id, restarted_at) in servers.items():
            # What this process saw itself (while the database was away) is newer.
            self.servers.setdefault(server, _ServerMemory(run_id, restarted_at=restarted_at))
        if depth is not None and self.last_depth is None:
            self.last_depth = (depth, 0)
        self.state_loaded = True
        return True

    def _overlay_unsaved(self, statuses: dict[str, str], reachable: dict[str, bool]) -> None:
        """Events kept in memory while the database was away are newer than what it holds."""
        for event in self.unsaved:  # oldest first
            if event.kind in _STATUS_KINDS and event.new_status:
                statuses[event.subject] = event.new_status
                if event.subject.startswith("redis:"):
                    reachable[event.subject.split(":", 1)[1]] = event.kind != MetricEvent.UNREACHABLE

    def load_thresholds(self) -> bool:
        """Fresh thresholds each tick; the last good ones while the database is away."""
        loaded = self._db(lambda: Thresholds.from_models(cMetricSettings.load(), list(QueueThreshold.objects.all())),
                          None)
        if loaded is not None:
            self.thresholds = loaded
        return loaded is not None

    def evaluate(self, collection: Collection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        changes: list[dict[str, Any]] = []
        now = time.time()
        broker = collection.broker
        depth = (sum(q.depth for q in broker.queues.values()), broker.unacked_count) if broker else None
        server_views = {s: self._server_view(reading, changes, depth) for s, reading in collection.servers.items()}
        redis_entries = [self._role_entry(role, server_views, changes) for role in ROLES if role in self.layout.roles]
        workers = self._worker_entries(broker, now)
        queue_entries = [self._queue_entry(q, broker, workers, now, changes) for q in self.collector.queues]
        if depth is not None:
            self.last_depth = depth
        snapshot = {
            "collected_at": iso(now),
            "duration_ms": collection.duration_ms,
            "queues": queue_entries,
            "unacked": _unacked(broker, now),
            "redis": redis_entries,
            "workers": workers,
            "thresholds": self.thresholds.as_dict(),
            "events": [],
            "database": dict(self.database),
            "controller": {"host": socket.gethostname(), "pid": os.getpid(), "leader": self.leader.held,
                           "interval": self.interval},
        }
        return snapshot, changes

    def record_events(self, changes: list[dict[str, Any]]) -> bool:
        """Save new events (and any kept while the database was away)."""
        for change in changes:
            event = MetricEvent(at=datetime.now(dt_timezone.utc), **change)
            log = logger.error if change["new_status"] == CRITICAL else logger.warning
            log("event %s %s: %s", change["kind"], change["subject"], change["message"])
            self.unsaved.append(event)
        saved: list[MetricEvent] = []
        self._db(lambda: self._save_unsaved(saved), None)  # those saved before a failure count too
        for event in saved:
            self.pending_alerts.append(event.id)
        self._remember(changes, saved)
        return bool(changes)

    def publish(self, snapshot: dict[str, Any]) -> bool:
        """To the cache and the Channels group; a role this tick found unreachable
        is skipped (trying would only add its timeouts to the tick)."""
        if not self.publish_enabled:
            return False
        up = {r["role"]: r["reachable"] for r in snapshot["redis"]}
        if up.get("cache", True):
            self._try("cache", lambda: snapshots.publish_to_cache(snapshot))
        if up.get("channels", True):
            self._try("channels", lambda: snapshots.publish_to_group(snapshot))
        return True

    def roll_up(self, snapshot: dict[str, Any]) -> bool:
        """Upsert this minute's row per queue (highest depth) and per role (last memory)."""
        minute = datetime.now(dt_timezone.utc).replace(second=0, microsecond=0)
        return bool(self._db(lambda: self._write_rollup(minute, snapshot), False))

    def send_alerts(self, broker_up: bool) -> bool:
        """Hand saved events to trigger_alerts; a rebuild after a restart too."""
        if not (broker_up and self.send_tasks):
            return False
        worked = False
        if self.pending_alerts:
            ids, self.pending_alerts = self.pending_alerts, []
            if not self._try("alerts", lambda: _send_alerts(ids)):
                self.pending_alerts = ids + self.pending_alerts
            worked = True
        if self.pending_rebuild:
            self.pending_rebuild = not self._try("rebuild", _queue_rebuilds)
            worked = True
        return worked

    def clean_locks(self, broker: BrokerReading | None) -> bool:
        """Delete locks of dead workers and forget long-silent workers, with the
        heartbeats this tick's collection read (no second HGETALL)."""
        if broker is None:
            return False
        client = self.collector.broker_client
        deleted = self._try("lock cleaning", lambda: clean_dead_locks(client, self.keys, broker.workers)) or []
        for name in deleted if isinstance(deleted, list) else []:
            logger.warning("deleted lock %s: its owner is not alive (heartbeat expired or another instance)", name)
        self._try("worker pruning", lambda: self._forget_old_workers(broker))
        return bool(deleted)

    # -- evaluation helpers -------------------------------------------------------
    def _server_view(self, reading: ServerReading, changes: list[dict[str, Any]],
                     depth: tuple[int, int] | None) -> dict[str, Any]:
        info = reading.info
        previous = self.servers.get(reading.server) or _ServerMemory(None)
        view: dict[str, Any] = {"reachable": reading.reachable, "error": reading.error,
                                "last_restart_at": iso(previous.restarted_at)}
        if not reading.reachable:
            return view
        run_id = info.get("run_id")
        evicted, rejected = int(info.get("evicted_keys", 0)), int(info.get("rejected_connections", 0))
        restarted = previous.run_id not in (None, run_id)
        persistence = _persistence(info, reading.save)
        restarted_at = time.time() if restarted else previous.restarted_at
        if restarted:
            changes.append(self._restart_change(reading, previous.run_id, run_id, persistence["persistent"], depth))
            if "broker" in reading.roles:
                self.heartbeat_grace_until = time.time() + HEARTBEAT_TTL
        view.update(_memory(info))
        view.update(
            evicted_keys_delta=previous.delta("evicted", evicted, restarted),
            rejected_connections_delta=previous.delta("rejected", rejected, restarted),
            connected_clients=info.get("connected_clients"),
            maxclients=info.get("maxclients"),
            maxmemory_policy=info.get("maxmemory_policy"),
            uptime_seconds=info.get("uptime_in_seconds"),
            persistence=persistence,
            run_id=run_id,
            redis_version=info.get("redis_version"),
            last_restart_at=iso(restarted_at),
        )
        if previous.run_id != run_id:
            self._db(lambda: _remember_server(reading.server, run_id, restarted_at if restarted else None), None)
        self.servers[reading.server] = _ServerMemory(run_id, evicted, rejected, restarted_at)
        return view

    def _restart_change(self, reading: ServerReading, old: str, new: str, persistent: bool,
                        depth: tuple[int, int] | None) -> dict[str, Any]:
        """A restart event: what was lost (not persistent: critical) or what survived (persistent: warn)."""
        host, port = reading.server
        self.pending_rebuild = True
        details: dict[str, Any] = {"server": f"{host}:{port}", "roles": reading.roles, "old_run_id": old,
                                   "new_run_id": new, "persistent": persistent, "lost_depth": 0, "lost_unacked": 0,
                                   "depth_after": None, "unacked_after": None}
        if "broker" in reading.roles:
            (queued, unacked), (queued_now, unacked_now) = self.last_depth or (0, 0), depth or (0, 0)
            details.update(lost_depth=max(0, queued - queued_now), lost_unacked=max(0, unacked - unacked_now),
                           depth_after=queued_now, unacked_after=unacked_now)
        return {
            "kind": MetricEvent.RESTART, "subject": f"redis:{reading.roles[0]}", "old_status": "",
            "new_status": WARN if persistent else CRITICAL,
            "message": f"Redis {host}:{port} ({', '.join(reading.roles)}) restarted: its run_id changed; "
                       + _restart_outcome(details),
            "details": details,
        }

    def _role_entry(self, role: str, views: dict, changes: list[dict[str, Any]]) -> dict[str, Any]:
        role_url = self.layout.roles[role]
        server = role_url.server
        view = views.get(server, {"reachable": False, "error": "not read"})
        shared = [r for r in self.collector.servers.get(server, []) if r != role]
        entry = {"role": role, "host": role_url.host, "port": role_url.port, "db": role_url.db,
                 "tls": role_url.tls, "shared_with": shared, **_EMPTY_SERVER, **view}
        facts = ServerFacts(entry["reachable"], entry["error"], entry["memory_percent"], entry["no_maxmemory"],
                            entry["evicted_keys_delta"], entry["rejected_connections_delta"],
                            entry["maxmemory_policy"])
        rising, reasons = redis_status(facts, role, self.thresholds)
        clearing, _ = redis_status(facts, role, self.thresholds, 1 - CLEAR_MARGIN)
        subject = f"redis:{role}"
        old, new = self.hysteresis.update(subject, rising, clearing)
        entry.update(status=new, reasons=reasons + _note(self.hysteresis.clearing_note(subject)))
        changes.extend(self._role_changes(entry, subject, old, new))
        return entry

    def _role_changes(self, entry: dict[str, Any], subject: str, old: str, new: str) -> list[dict[str, Any]]:
        role, where = entry["role"], f"{entry['host']}:{entry['port']}"
        was_reachable = self.reachable.get(role, True)
        self.reachable[role] = entry["reachable"]
        base = {"subject": subject, "old_status": old, "new_status": new, "details": {"reasons": entry["reasons"]}}
        if was_reachable and not entry["reachable"]:
            return [{**base, "kind": MetricEvent.UNREACHABLE,
                     "message": f"Redis {role} ({where}) is {entry['error'] or 'unreachable'}"}]
        if entry["reachable"] and not was_reachable:
            if role == "broker":
                self.heartbeat_grace_until = time.time() + HEARTBEAT_TTL
            return [{**base, "kind": MetricEvent.RECOVERED,
                     "message": f"Redis {role} ({where}) answers again" + (
                         f"; it stays {new} until it has been clear for {self.hysteresis.clear_ticks} ticks"
                         if new != OK else "")}]
        if old != new:
            why = "; ".join(entry["reasons"]) or "back within thresholds"
            return [{**base, "kind": MetricEvent.STATUS,
                     "message": f"Redis {role} ({where}) is {new} (was {old}): {why}"}]
        return []

    def _worker_entries(self, broker: BrokerReading | None, now: float) -> list[dict[str, Any]]:
        if broker is None:
            return []
        entries = []
        for name, beat in sorted(broker.workers.items()):
            ts = float(beat.get("ts", 0))
            entries.append({"name": name, "group": beat.get("group"), "host": beat.get("host"),
                            "pid": beat.get("pid"), "queues": list(beat.get("queues", [])),
                            "last_heartbeat": iso(ts), "alive": now - ts <= HEARTBEAT_TTL})
        return entries

    def _queue_entry(self, queue: str, broker: BrokerReading | None, workers: list[dict[str, Any]], now: float,
                     changes: list[dict[str, Any]]) -> dict[str, Any]:
        family = BY_QUEUE.get(queue)
        warn, critical = self.thresholds.for_queue(queue)
        entry = {"name": queue, "lane": family.lane if family else None, "group": family.group if family else None,
                 "depth": None, "by_priority": {}, "oldest_age_seconds": None, "consumers": 0,
                 "processed_per_minute": None, "processed_total": None, "warn": warn, "critical": critical}
        subject = f"queue:{queue}"
        if broker is None:
            # Frozen: no figures, so no status change and no event.
            _, reasons = queue_status(QueueFacts(None, 0, None), warn, critical)
            entry.update(status=self.hysteresis.status(subject) or OK, reasons=reasons)
            return entry
        reading = broker.queues[queue]
        consumers = sum(1 for w in workers if w["alive"] and queue in w["queues"])
        total = broker.processed_total.get(queue, 0)
        entry.update(depth=reading.depth, by_priority={str(k): v for k, v in reading.by_priority.items()},
                     oldest_age_seconds=_age(reading.oldest_sent_at, now), consumers=consumers,
                     processed_per_minute=_per_minute(broker, queue, now), processed_total=total)
        known = consumers if consumers or now >= self.heartbeat_grace_until else None
        facts = QueueFacts(reading.depth, known, self._stalled(queue, reading.depth, consumers, total, now))
        rising, reasons = queue_status(facts, warn, critical)
        clearing, _ = queue_status(facts, warn, critical, 1 - CLEAR_MARGIN)
        old, new = self.hysteresis.update(subject, rising, clearing)
        entry.update(status=new, reasons=reasons + _note(self.hysteresis.clearing_note(subject)))
        if old != new:
            why = "; ".join(reasons) or "back within thresholds"
            changes.append({"kind": MetricEvent.STATUS, "subject": subject, "old_status": old, "new_status": new,
                            "message": f"queue {queue} is {new} (was {old}): {why}",
                            "details": {"depth": reading.depth, "reasons": reasons}})
        return entry

    def _stalled(self, queue: str, depth: int, consumers: int, total: int, now: float) -> float | None:
        """Seconds the queue has been stalled, once it has for ``stall_ticks`` ticks."""
        stall = self.stalls.setdefault(queue, _Stall())
        moving = stall.total is None or total != stall.total
        stall.total = total
        if depth == 0 or consumers == 0 or moving:
            stall.ticks, stall.since = 0, None
            return None
        stall.ticks += 1
        stall.since = stall.since or now
        return now - stall.since + self.interval if stall.ticks >= self.stall_ticks else None

    # -- side effects ---------------------------------------------------------------
    def _db(self, action: Callable[[], Any], default: Any) -> Any:
        """Run a database action; a dead database gives ``default``, and a reconnect next time."""
        try:
            result = action()
        except DatabaseError as exc:
            if self.database["reachable"]:
                logger.error("database unreachable: %s", type(exc).__name__)
            self.database = {"reachable": False, "error": f"unreachable: {type(exc).__name__}"}
            try:
                connection.close()
            except DatabaseError:
                pass
            return default
        if not self.database["reachable"]:
            logger.info("database answers again")
        self.database = {"reachable": True, "error": None}
        return result

    def _try(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one side effect; its failure is logged once per outage and returns None."""
        try:
            result = action()
        except Exception as exc:
            if what not in self._publish_failed:
                self._publish_failed.add(what)
                logger.warning("%s failed: %s (quiet until it works again)", what, type(exc).__name__)
            return None
        if what in self._publish_failed:
            self._publish_failed.discard(what)
            logger.info("%s works again", what)
        return True if result is None else result

    def _save_unsaved(self, saved: list[MetricEvent]) -> None:
        while self.unsaved:
            self.unsaved[0].save()
            saved.append(self.unsaved.popleft())

    def _remember(self, changes: list[dict[str, Any]], saved: list[MetricEvent]) -> None:
        """Keep the latest events for the snapshot, database or not.

        An event kept while the database was away shows with ``id`` None and
        gets its id once it is saved.
        """
        by_key = {(e.subject, e.kind, e.message): e.as_dict() for e in saved}
        for index, shown in enumerate(self.recent_events):
            if shown["id"] is None and (shown["subject"], shown["kind"], shown["message"]) in by_key:
                self.recent_events[index] = by_key[(shown["subject"], shown["kind"], shown["message"])]
        for change in changes:
            key = (change["subject"], change["kind"], change["message"])
            self.recent_events.appendleft(by_key.get(key) or {**change, "id": None, "at": iso(time.time())})

    def _read_state(self) -> tuple[dict[str, str], dict[str, bool], dict[tuple[str, int], tuple[str, float | None]],
                                   int | None, list[dict[str, Any]]]:
        statuses: dict[str, str] = {}
        reachable: dict[str, bool] = {}
        cutoff = datetime.now(dt_timezone.utc) - timedelta(days=30)
        rows = MetricEvent.objects.filter(at__gte=cutoff, kind__in=_STATUS_KINDS).values_list(
            "subject", "kind", "new_status")
        for subject, kind, new_status in rows.order_by("-at", "-id")[:5000]:
            if subject in statuses or not new_status:
                continue
            statuses[subject] = new_status
            if subject.startswith("redis:"):
                reachable[subject.split(":", 1)[1]] = kind != MetricEvent.UNREACHABLE
        servers = {}
        for state in RedisServerState.objects.all():
            host, _, port = state.server.rpartition(":")
            servers[(host, int(port))] = (state.run_id, state.restarted_at.timestamp() if state.restarted_at else None)
        latest = QueueSample.objects.order_by("-minute").values_list("minute", flat=True).first()
        depth = None
        if latest is not None:
            depth = sum(QueueSample.objects.filter(minute=latest).values_list("depth", flat=True))
        events = [e.as_dict() for e in MetricEvent.objects.all()[:EVENTS_IN_SNAPSHOT]]
        return statuses, reachable, servers, depth, events

    def _write_rollup(self, minute: datetime, snapshot: dict[str, Any]) -> bool:
        queue_rows = []
        for q in snapshot["queues"]:
            if q["depth"] is None:
                continue
            queue_rows.append(QueueSample(minute=minute, queue=q["name"], depth=q["depth"],
                                          oldest_age_seconds=q["oldest_age_seconds"],
                                          processed_per_minute=q["processed_per_minute"]))
        existing = dict(QueueSample.objects.filter(minute=minute).values_list("queue", "depth"))
        for row in queue_rows:
            row.depth = max(row.depth, existing.get(row.queue, 0))  # the minute's highest depth
        QueueSample.objects.bulk_create(queue_rows, update_conflicts=True, unique_fields=["minute", "queue"],
                                        update_fields=["depth", "oldest_age_seconds", "processed_per_minute"])
        redis_rows = [RedisSample(minute=minute, role=r["role"], reachable=r["reachable"],
                                  memory_percent=r["memory_percent"], used_memory=r["used_memory"])
                      for r in snapshot["redis"]]
        RedisSample.objects.bulk_create(redis_rows, update_conflicts=True, unique_fields=["minute", "role"],
                                        update_fields=["reachable", "memory_percent", "used_memory"])
        return True

    def _forget_old_workers(self, broker: BrokerReading) -> int:
        """Drop heartbeat entries silent for WORKER_FORGET_SECONDS, and unreadable ones."""
        now = time.time()
        stale = [name for name, beat in broker.workers.items() if now - float(beat["ts"]) > WORKER_FORGET_SECONDS]
        stale += broker.unreadable_workers
        if stale:
            self.collector.broker_client.hdel(self.keys.workers, *stale)
        return len(stale)


_STATUS_KINDS = (MetricEvent.STATUS, MetricEvent.UNREACHABLE, MetricEvent.RECOVERED)

_EMPTY_SERVER: dict[str, Any] = {
    "reachable": False, "error": None, "used_memory": None, "maxmemory": None, "memory_percent": None,
    "no_maxmemory": None, "evicted_keys_delta": None, "rejected_connections_delta": None,
    "connected_clients": None, "maxclients": None, "maxmemory_policy": None, "uptime_seconds": None,
    "persistence": None, "run_id": None, "redis_version": None, "last_restart_at": None,
}


def _memory(info: Mapping[str, Any]) -> dict[str, Any]:
    used = int(info.get("used_memory", 0))
    maxmemory = int(info.get("maxmemory", 0))
    total = int(info.get("total_system_memory", 0))
    base = maxmemory or total
    percent = round(used * 100.0 / base, 2) if base else None
    return {"used_memory": used, "maxmemory": maxmemory, "memory_percent": percent, "no_maxmemory": not maxmemory}


def _persistence(info: Mapping[str, Any], save: str | None) -> dict[str, Any]:
    appendonly = bool(int(info.get("aof_enabled", 0)))
    return {"save": save, "appendonly": appendonly, "persistent": appendonly or bool(save)}


def _unacked(broker: BrokerReading | None, now: float) -> dict[str, Any]:
    if broker is None:
        return {"count": None, "oldest_age_seconds": None}
    return {"count": broker.unacked_count, "oldest_age_seconds": _age(broker.unacked_oldest_at, now)}


def _age(then: float | None, now: float) -> float | None:
    if then is None:
        return None
    return round(max(0.0, now - then), 3)


def _per_minute(broker: BrokerReading, queue: str, now: float) -> float:
    """A sliding one-minute window over two minute buckets."""
    elapsed = (now % 60) / 60
    previous = broker.processed_last_minute.get(queue, 0)
    current = broker.processed_this_minute.get(queue, 0)
    return round(previous * (1 - elapsed) + current, 1)


def _note(text: str | None) -> list[str]:
    return [text] if text else []


def _restart_outcome(details: dict[str, Any]) -> str:
    """What a restart cost, in words: losses for a server that is not persistent."""
    persistent, broker = details["persistent"], details["depth_after"] is not None
    if broker and not persistent:
        return f"{details['lost_depth']} queued and {details['lost_unacked']} unacked messages were lost"
    if broker:
        return (f"it is persistent: {details['depth_after']} queued and {details['unacked_after']} unacked "
                "messages survived")
    return "it is persistent: its data survived" if persistent else "it is not persistent: its data was lost"


def _remember_server(server: tuple[str, int], run_id: str | None, restarted_at: float | None) -> None:
    """The server's run_id, and when a restart was seen, for the next controller (or leader)."""
    if not run_id:
        return
    now = datetime.now(dt_timezone.utc)
    defaults: dict[str, Any] = {"run_id": run_id, "seen_at": now}
    if restarted_at is not None:
        defaults["restarted_at"] = datetime.fromtimestamp(restarted_at, dt_timezone.utc)
    RedisServerState.objects.update_or_create(server=f"{server[0]}:{server[1]}", defaults=defaults)


def _send_alerts(ids: list[int]) -> None:
    from apps.metrics.tasks import trigger_alerts

    trigger_alerts.apply_async(args=(ids,), retry=False)


def _queue_rebuilds() -> None:
    from apps.metrics.tasks import rebuild_caches

    rebuild_caches.apply_async(retry=False)

