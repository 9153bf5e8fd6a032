"""The assessment: one collection and the thresholds in; snapshot entries and status changes out.

No database, no Redis, no publishing here. What a judgement needs from one
tick to the next is kept in memory: the hysteresis of every subject, each
server's run_id and counters, stall counts, the last depth, and whether
workers have had time to beat since the broker came back. The controller
restores that memory from the database (apps/metrics/memory.py) and writes
what an :class:`Assessment` reports (the run_ids to remember, the changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from apps.metrics.evaluate import Hysteresis, QueueFacts, ServerFacts, Thresholds, queue_status, redis_status
from apps.metrics.models import CRITICAL, OK, WARN, MetricEvent, iso
from apps.metrics.snapshot import Change, Persistence, QueueEntry, RedisEntry, Unacked, WorkerEntry  # noqa: F401  (Change: re-exported)
from config.redis_layout import ROLES, Layout
from workers.collect import BrokerReading, Collection, ServerReading
from workers.heartbeat import HEARTBEAT_TTL
from workers.queues import BY_QUEUE

Server = tuple[str, int]


@dataclass
class ServerMemory:
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


@dataclass
class Assessment:
    queues: list[QueueEntry] = field(default_factory=list)
    unacked: Unacked = field(default_factory=lambda: Unacked(count=None, oldest_age_seconds=None))
    redis: list[RedisEntry] = field(default_factory=list)
    workers: list[WorkerEntry] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    # Servers whose run_id is new to this controller: (server, run_id, restart time or None).
    run_ids: list[tuple[Server, str, float | None]] = field(default_factory=list)
    restarted: bool = False  # a server restarted: its caches need rebuilding


class Assessor:
    def __init__(self, layout: Layout, servers: Mapping[Server, list[str]], queues: Iterable[str], *,
                 interval: float, clear_ticks: int, stall_ticks: int) -> None:
        self.layout = layout
        self.server_roles = servers
        self.queues = tuple(queues)
        self.interval = interval
        self.stall_ticks = stall_ticks
        self.hysteresis = Hysteresis(clear_ticks)
        self.reachable: dict[str, bool] = {}
        self.servers: dict[Server, ServerMemory] = {}
        self.stalls: dict[str, _Stall] = {}
        self.last_depth: tuple[int, int] | None = None  # (queued, unacked) at the previous tick
        # After the broker restarts or returns, workers need one heartbeat
        # interval to be seen again: until then "no consumer" is not asserted.
        self.heartbeat_grace_until = 0.0

    def forget(self) -> None:
        """Drop what may be stale once another controller may have led: the
        counters' baselines, stall counts, last depth (and run_ids, read again)."""
        self.servers.clear()
        self.stalls.clear()
        self.last_depth = None

    def restore(self, statuses: dict[str, str], reachable: dict[str, bool],
                servers: Mapping[Server, tuple[str, float | None]], depth: int | None) -> None:
        """Statuses, run_ids, restarts and depth as the database remembers them."""
        self.hysteresis = Hysteresis(self.hysteresis.clear_ticks, statuses)
        self.reachable = reachable
        for server, (run_id, restarted_at) in servers.items():
            # What this process saw itself (while the database was away) is newer.
            self.servers.setdefault(server, ServerMemory(run_id, restarted_at=restarted_at))
        if depth is not None and self.last_depth is None:
            self.last_depth = (depth, 0)

    def assess(self, collection: Collection, thresholds: Thresholds, now: float) -> Assessment:
        found = Assessment()
        broker = collection.broker
        depth = (sum(q.depth for q in broker.queues.values()), broker.unacked_count) if broker else None
        views = {s: self._server_view(reading, found, depth, now) for s, reading in collection.servers.items()}
        found.redis = [self._role_entry(role, views, thresholds, found, now)
                       for role in ROLES if role in self.layout.roles]
        found.workers = _worker_entries(broker, now)
        found.queues = [self._queue_entry(q, broker, found, thresholds, now) for q in self.queues]
        found.unacked = _unacked(broker, now)
        if depth is not None:
            self.last_depth = depth
        return found

    # -- Redis servers and roles ----------------------------------------------------
    def _server_view(self, reading: ServerReading, found: Assessment, depth: tuple[int, int] | None,
                     now: float) -> dict[str, Any]:
        info = reading.info
        previous = self.servers.get(reading.server) or ServerMemory(None)
        view: dict[str, Any] = {"reachable": reading.reachable, "error": reading.error,
                                "last_restart_at": iso(previous.restarted_at)}
        if not reading.reachable:
            return view
        run_id = info.get("run_id")
        evicted, rejected = int(info.get("evicted_keys", 0)), int(info.get("rejected_connections", 0))
        restarted = previous.run_id not in (None, run_id)
        persistence = _persistence(info, reading.save)
        restarted_at = now if restarted else previous.restarted_at
        if restarted:
            found.changes.append(self._restart_change(reading, previous.run_id, run_id, persistence, depth))
            found.restarted = True
            if "broker" in reading.roles:
                self.heartbeat_grace_until = now + HEARTBEAT_TTL
        view.update(_memory(info))
        view.update(
            evicted_keys_delta=previous.delta("evicted", evicted, restarted),
            rejected_connections_delta=previous.delta("rejected", rejected, restarted),
            evicted_keys=evicted, rejected_connections=rejected,
            connected_clients=info.get("connected_clients"), maxclients=info.get("maxclients"),
            maxmemory_policy=info.get("maxmemory_policy"), uptime_seconds=info.get("uptime_in_seconds"),
            persistence=persistence, run_id=run_id, redis_version=info.get("redis_version"),
            last_restart_at=iso(restarted_at),
        )
        if run_id and previous.run_id != run_id:
            found.run_ids.append((reading.server, run_id, restarted_at if restarted else None))
        self.servers[reading.server] = ServerMemory(run_id, evicted, rejected, restarted_at)
        return view

    def _restart_change(self, reading: ServerReading, old: str, new: str, persistence: Persistence,
                        depth: tuple[int, int] | None) -> Change:
        """A restart event: what was lost (not persistent: critical) or what survived (persistent: warn)."""
        host, port = reading.server
        persistent = persistence["persistent"]
        details: dict[str, Any] = {"server": f"{host}:{port}", "roles": reading.roles, "old_run_id": old,
                                   "new_run_id": new, "persistent": persistent, "lost_depth": 0, "lost_unacked": 0,
                                   "depth_after": None, "unacked_after": None}
        if "broker" in reading.roles:
            (queued, unacked), (queued_now, unacked_now) = self.last_depth or (0, 0), depth or (0, 0)
            details.update(lost_depth=max(0, queued - queued_now), lost_unacked=max(0, unacked - unacked_now),
                           depth_after=queued_now, unacked_after=unacked_now)
        return Change(
            kind=MetricEvent.RESTART, subject=f"redis:{reading.roles[0]}", old_status="",
            new_status=WARN if persistent else CRITICAL,
            message=f"Redis {host}:{port} ({', '.join(reading.roles)}) restarted: its run_id changed; "
                    + _restart_outcome(details),
            details=details,
        )

    def _role_entry(self, role: str, views: dict[Server, dict[str, Any]], thresholds: Thresholds,
                    found: Assessment, now: float) -> RedisEntry:
        role_url = self.layout.roles[role]
        server = role_url.server
        view = views.get(server, {"reachable": False, "error": "not read"})
        shared = [r for r in self.server_roles.get(server, []) if r != role]
        entry: dict[str, Any] = {"role": role, "host": role_url.host, "port": role_url.port, "db": role_url.db,
                                 "tls": role_url.tls, "shared_with": shared, **_EMPTY_SERVER, **view}
        facts = ServerFacts(entry["reachable"], entry["error"], entry["memory_percent"], entry["no_maxmemory"],
                            entry["evicted_keys_delta"], entry["rejected_connections_delta"],
                            entry["maxmemory_policy"])
        subject = f"redis:{role}"
        judged = self.hysteresis.judge(subject, lambda scale: redis_status(facts, role, thresholds, scale))
        entry.update(status=judged.new, reasons=judged.shown)
        found.changes.extend(self._role_changes(entry, subject, judged.old, judged.new, now))
        return entry  # type: ignore[return-value]  # every RedisEntry key is set above

    def _role_changes(self, entry: dict[str, Any], subject: str, old: str, new: str, now: float) -> list[Change]:
        role, where = entry["role"], f"{entry['host']}:{entry['port']}"
        was_reachable = self.reachable.get(role, True)
        self.reachable[role] = entry["reachable"]
        base = {"subject": subject, "old_status": old, "new_status": new, "details": {"reasons": entry["reasons"]}}
        if was_reachable and not entry["reachable"]:
            return [Change(**base, kind=MetricEvent.UNREACHABLE,
                           message=f"Redis {role} ({where}) is {entry['error'] or 'unreachable'}")]
        if entry["reachable"] and not was_reachable:
            if role == "broker":
                self.heartbeat_grace_until = now + HEARTBEAT_TTL
            return [Change(**base, kind=MetricEvent.RECOVERED,
                           message=f"Redis {role} ({where}) answers again" + (
                               f"; it stays {new} until it has been clear for {self.hysteresis.clear_ticks} ticks"
                               if new != OK else ""))]
        if old != new:
            why = "; ".join(entry["reasons"]) or "back within thresholds"
            return [Change(**base, kind=MetricEvent.STATUS,
                           message=f"Redis {role} ({where}) is {new} (was {old}): {why}")]
        return []

    # -- queues ---------------------------------------------------------------------
    def _queue_entry(self, queue: str, broker: BrokerReading | None, found: Assessment, thresholds: Thresholds,
                     now: float) -> QueueEntry:
        family = BY_QUEUE.get(queue)
        warn, critical = thresholds.for_queue(queue)
        entry: dict[str, Any] = {
            "name": queue, "lane": family.lane if family else None, "group": family.group if family else None,
            "depth": None, "by_priority": {}, "oldest_age_seconds": None, "consumers": 0,
            "processed_per_minute": None, "processed_total": None, "warn": warn, "critical": critical}
        subject = f"queue:{queue}"
        if broker is None:
            # Frozen: no figures, so no status change and no event.
            _, reasons = queue_status(QueueFacts(None, 0, None), warn, critical)
            entry.update(status=self.hysteresis.status(subject) or OK, reasons=reasons)
            return entry  # type: ignore[return-value]
        reading = broker.queues[queue]
        consumers = sum(1 for w in found.workers if w["alive"] and queue in w["queues"])
        total = broker.processed_total.get(queue, 0)
        entry.update(depth=reading.depth, by_priority={str(k): v for k, v in reading.by_priority.items()},
                     oldest_age_seconds=_age(reading.oldest_sent_at, now), consumers=consumers,
                     processed_per_minute=_per_minute(broker, queue, now), processed_total=total)
        known = consumers if consumers or now >= self.heartbeat_grace_until else None
        facts = QueueFacts(reading.depth, known, self._stalled(queue, reading.depth, consumers, total, now))
        judged = self.hysteresis.judge(subject, lambda scale: queue_status(facts, warn, critical, scale))
        entry.update(status=judged.new, reasons=judged.shown)
        if judged.old != judged.new:
            why = "; ".join(judged.reasons) or "back within thresholds"
            found.changes.append(Change(
                kind=MetricEvent.STATUS, subject=subject, old_status=judged.old, new_status=judged.new,
                message=f"queue {queue} is {judged.new} (was {judged.old}): {why}",
                details={"depth": reading.depth, "reasons": judged.reasons}))
        return entry  # type: ignore[return-value]

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


_EMPTY_SERVER: dict[str, Any] = {
    "reachable": False, "error": None, "used_memory": None, "maxmemory": None, "memory_percent": None,
    "no_maxmemory": None, "evicted_keys_delta": None, "rejected_connections_delta": None,
    "evicted_keys": None, "rejected_connections": None, "connected_clients": None, "maxclients": None, "maxmemory_policy": None, "uptime_seconds": None,
    "persistence": None, "run_id": None, "redis_version": None, "last_restart_at": None,
}


def _worker_entries(broker: BrokerReading | None, now: float) -> list[WorkerEntry]:
    if broker is None:
        return []
    entries = []
    for name, beat in sorted(broker.workers.items()):
        ts = float(beat.get("ts", 0))
        entries.append(WorkerEntry(name=name, group=beat.get("group"), host=beat.get("host"), pid=beat.get("pid"),
                                   queues=list(beat.get("queues", [])), last_heartbeat=iso(ts),
                                   alive=now - ts <= HEARTBEAT_TTL))
    return entries


def _memory(info: Mapping[str, Any]) -> dict[str, Any]:
    used = int(info.get("used_memory", 0))
    maxmemory = int(info.get("maxmemory", 0))
    total = int(info.get("total_system_memory", 0))
    base = maxmemory or total
    percent = round(used * 100.0 / base, 2) if base else None
    return {"used_memory": used, "maxmemory": maxmemory, "memory_percent": percent, "no_maxmemory": not maxmemory}


def _persistence(info: Mapping[str, Any], save: str | None) -> Persistence:
    appendonly = bool(int(info.get("aof_enabled", 0)))
    return Persistence(save=save, appendonly=appendonly, persistent=appendonly or bool(save))


def _unacked(broker: BrokerReading | None, now: float) -> Unacked:
    if broker is None:
        return Unacked(count=None, oldest_age_seconds=None)
    return Unacked(count=broker.unacked_count, oldest_age_seconds=_age(broker.unacked_oldest_at, now))


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


def _restart_outcome(details: dict[str, Any]) -> str:
    """What a restart cost, in words: losses for a server that is not persistent."""
    persistent, broker = details["persistent"], details["depth_after"] is not None
    if broker and not persistent:
        return f"{details['lost_depth']} queued and {details['lost_unacked']} unacked messages were lost"
    if broker:
        return (f"it is persistent: {details['depth_after']} queued and {details['unacked_after']} unacked "
                "messages survived")
    return "it is persistent: its data survived" if persistent else "it is not persistent: its data was lost"
