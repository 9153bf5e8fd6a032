"""Counts that only grow, kept in ``MetricCounter`` rows for Prometheus.

* ``events`` {kind, subject_type, new_status}: every saved ``MetricEvent``;
* ``redis_restarts`` {role}: every restart event, once per role of the
  restarted server (a server shared by several roles restarts them all);
* ``alerts_sent`` {channel, result}: alert deliveries, counted per event.

Events are counted when they are saved (a ``post_save`` receiver connected in
``MetricsConfig.ready``), not by counting the rows still there: pruning old
events must not make a counter go down. Migration 0004 counts the events that
existed before.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from apps.metrics.models import MetricCounter, MetricEvent

EVENTS, RESTARTS, ALERTS_SENT = "events", "redis_restarts", "alerts_sent"

logger = logging.getLogger("flowwatch.metrics")


def label_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def add(name: str, labels: dict[str, str], amount: int = 1) -> None:
    """Add ``amount`` to one counter, creating its row at the first count."""
    if amount <= 0:
        return
    key = label_key(labels)
    if MetricCounter.objects.filter(name=name, labels=key).update(value=F("value") + amount):
        return
    try:
        with transaction.atomic():
            MetricCounter.objects.create(name=name, labels=key, value=amount)
    except IntegrityError:  # another process created the row meanwhile
        MetricCounter.objects.filter(name=name, labels=key).update(value=F("value") + amount)


def counts_for_event(kind: str, subject: str, new_status: str, details: Any) -> list[tuple[str, dict[str, str]]]:
    """The counters one event adds 1 to."""
    subject_type = subject.split(":", 1)[0]
    found = [(EVENTS, {"kind": kind, "subject_type": subject_type, "new_status": new_status or ""})]
    if kind == MetricEvent.RESTART:
        roles = (details or {}).get("roles") if isinstance(details, dict) else None
        roles = roles or [subject.split(":", 1)[-1]]
        found += [(RESTARTS, {"role": str(role)}) for role in roles]
    return found


def count_event(sender: type, instance: MetricEvent, created: bool, raw: bool = False, **_: Any) -> None:
    """post_save receiver: a new event adds to the event and restart counters.

    The event is saved by then: a counter that cannot be written is logged and
    left one short, rather than making the controller take the saved event
    for unsaved.
    """
    if not created or raw:
        return
    try:
        for name, labels in counts_for_event(instance.kind, instance.subject, instance.new_status,
                                             instance.details):
            add(name, labels)
    except DatabaseError as exc:
        logger.warning("event %s was saved but not counted: %s", instance.pk, type(exc).__name__)


def count_alerts(channel: str, result: str, events: int) -> None:
    add(ALERTS_SENT, {"channel": channel, "result": result}, events)


def read(names: Iterable[str]) -> dict[str, list[tuple[dict[str, str], int]]]:
    """Every row of the named counters: {name: [(labels, value), ...]}."""
    found: dict[str, list[tuple[dict[str, str], int]]] = {name: [] for name in names}
    for name, key, value in (MetricCounter.objects.filter(name__in=list(found))
                             .order_by("name", "labels").values_list("name", "labels", "value")):
        found[name].append((json.loads(key), value))
    return found
