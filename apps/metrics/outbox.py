"""The event outbox: status changes become MetricEvents, saved, shown and sent as alerts.

An event is kept in memory until the database takes it (while the database
is away it shows in the snapshot with ``id`` None, and gets its id once
saved); a saved event waits for the broker to hand it to ``trigger_alerts``.
A Redis restart queues ``rebuild_caches`` the same way.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime
from datetime import timezone as dt_timezone

from apps.metrics.assess import Change
from apps.metrics.effects import Effects
from apps.metrics.memory import EVENTS_IN_SNAPSHOT
from apps.metrics.models import CRITICAL, MetricEvent, iso
from apps.metrics.snapshot import EventEntry

logger = logging.getLogger("flowwatch.controller")

UNSAVED_LIMIT = 1000


class Outbox:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects
        self.unsaved: deque[MetricEvent] = deque(maxlen=UNSAVED_LIMIT)
        self.recent: deque[EventEntry] = deque(maxlen=EVENTS_IN_SNAPSHOT)
        self.pending_alerts: list[int] = []
        self.pending_rebuild = False

    def record(self, changes: list[Change]) -> None:
        """Log and save new events (and any kept while the database was away)."""
        for change in changes:
            log = logger.error if change["new_status"] == CRITICAL else logger.warning
            log("event %s %s: %s", change["kind"], change["subject"], change["message"])
            self.unsaved.append(MetricEvent(at=datetime.now(dt_timezone.utc), **change))
        saved: list[MetricEvent] = []
        self.effects.db(lambda: self._save_unsaved(saved), None)  # those saved before a failure count too
        self.pending_alerts.extend(event.id for event in saved)
        self._show(changes, saved)

    def events(self) -> list[EventEntry]:
        return list(self.recent)

    def restore(self, saved: list[EventEntry]) -> None:
        """The latest events as the database holds them, after those it has not taken yet."""
        unsaved = [e for e in self.recent if e["id"] is None]
        self.recent = deque((unsaved + saved)[:EVENTS_IN_SNAPSHOT], maxlen=EVENTS_IN_SNAPSHOT)

    def send(self) -> None:
        """Hand saved events to trigger_alerts, and a rebuild after a restart; retried next tick on failure."""
        if self.pending_alerts:
            ids, self.pending_alerts = self.pending_alerts, []
            if not self.effects.attempt("alerts", lambda: _send_alerts(ids)):
                self.pending_alerts = ids + self.pending_alerts
        if self.pending_rebuild:
            self.pending_rebuild = not self.effects.attempt("rebuild", _queue_rebuilds)

    def _save_unsaved(self, saved: list[MetricEvent]) -> None:
        while self.unsaved:
            self.unsaved[0].save()
            saved.append(self.unsaved.popleft())

    def _show(self, changes: list[Change], saved: list[MetricEvent]) -> None:
        """Keep the latest events for the snapshot, database or not; one saved now gets its id."""
        by_key = {(e.subject, e.kind, e.message): e.as_dict() for e in saved}
        for index, shown in enumerate(self.recent):
            key = (shown["subject"], shown["kind"], shown["message"])
            if shown["id"] is None and key in by_key:
                self.recent[index] = by_key[key]
        for change in changes:
            key = (change["subject"], change["kind"], change["message"])
            self.recent.appendleft(by_key.get(key) or {**change, "id": None, "at": iso(time.time())})


def _send_alerts(ids: list[int]) -> None:
    from apps.metrics.tasks import trigger_alerts

    trigger_alerts.apply_async(args=(ids,), retry=False)


def _queue_rebuilds() -> None:
    from apps.metrics.tasks import rebuild_caches

    rebuild_caches.apply_async(retry=False)

