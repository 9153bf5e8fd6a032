"""What the controller remembers in the database, for the next controller or leader.

A controller that starts, or leads again after standing by, reads here the
last status of every subject, each Redis server's run_id and last restart,
and the last depth, so that it neither repeats an alert another controller
sent nor misses a Redis restart that happened while it was away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Iterable

from apps.metrics.models import MetricEvent, QueueSample, RedisServerState
from apps.metrics.snapshot import EventEntry

EVENTS_IN_SNAPSHOT = 50
STATUS_KINDS = (MetricEvent.STATUS, MetricEvent.UNREACHABLE, MetricEvent.RECOVERED)
# A status event older than this says nothing about a subject's status today.
STATUS_MEMORY = timedelta(days=30)

Server = tuple[str, int]


@dataclass
class Remembered:
    statuses: dict[str, str]  # subject -> its last status
    reachable: dict[str, bool]  # Redis role -> whether it answered at its last event
    servers: dict[Server, tuple[str, float | None]]  # server -> (run_id, last restart time)
    depth: int | None  # messages queued in the last minute the history holds
    events: list[EventEntry]  # the latest events, newest first


def read() -> Remembered:
    """Everything at once; raises DatabaseError when the database is away."""
    statuses: dict[str, str] = {}
    reachable: dict[str, bool] = {}
    cutoff = datetime.now(dt_timezone.utc) - STATUS_MEMORY
    rows = MetricEvent.objects.filter(at__gte=cutoff, kind__in=STATUS_KINDS).values_list(
        "subject", "kind", "new_status")
    for subject, kind, new_status in rows.order_by("-at", "-id")[:5000]:
        if subject not in statuses and new_status:
            _note_status(statuses, reachable, subject, kind, new_status)
    return Remembered(statuses, reachable, _servers(), _last_depth(), latest_events())


def overlay(found: Remembered, unsaved: Iterable[MetricEvent]) -> None:
    """Events kept in memory while the database was away (oldest first) are newer than what it holds."""
    for event in unsaved:
        if event.kind in STATUS_KINDS and event.new_status:
            _note_status(found.statuses, found.reachable, event.subject, event.kind, event.new_status)


def latest_events() -> list[EventEntry]:
    return [e.as_dict() for e in MetricEvent.objects.all()[:EVENTS_IN_SNAPSHOT]]


def remember_server(server: Server, run_id: str, restarted_at: float | None) -> None:
    """The server's run_id, and when a restart was seen, for the next controller (or leader)."""
    defaults: dict[str, Any] = {"run_id": run_id, "seen_at": datetime.now(dt_timezone.utc)}
    if restarted_at is not None:
        defaults["restarted_at"] = datetime.fromtimestamp(restarted_at, dt_timezone.utc)
    RedisServerState.objects.update_or_create(server=f"{server[0]}:{server[1]}", defaults=defaults)


def _note_status(statuses: dict[str, str], reachable: dict[str, bool], subject: str, kind: str,
                 new_status: str) -> None:
    statuses[subject] = new_status
    if subject.startswith("redis:"):
        reachable[subject.split(":", 1)[1]] = kind != MetricEvent.UNREACHABLE


def _servers() -> dict[Server, tuple[str, float | None]]:
    servers = {}
    for state in RedisServerState.objects.all():
        host, _, port = state.server.rpartition(":")
        servers[(host, int(port))] = (state.run_id, state.restarted_at.timestamp() if state.restarted_at else None)
    return servers


def _last_depth() -> int | None:
    latest = QueueSample.objects.order_by("-minute").values_list("minute", flat=True).first()
    if latest is None:
        return None
    return sum(QueueSample.objects.filter(minute=latest).values_list("depth", flat=True))
