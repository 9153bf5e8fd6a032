"""The controller's hand-back step: work held by a dead worker goes back to its queue.

Each tick the leader asks the broker (workers/handback.py) for unacked
messages that no live worker holds, hands each back to the front of its
queue at its original priority — or parks it when its task is not safe to
repeat — and turns every move into an event, so it is seen, counted and
alerted on like any other.
"""

from __future__ import annotations

import logging

import redis

from apps.metrics.assess import Change
from apps.metrics.models import CRITICAL, WARN, MetricEvent
from workers import handback
from workers.collect_keys import BrokerKeys

logger = logging.getLogger("flowwatch.controller")


class HandBack:
    def __init__(self, client: redis.Redis | None, keys: BrokerKeys) -> None:
        self.client, self.keys = client, keys

    def run(self) -> list[Change]:
        """Settle this tick's orphans; a broker error is left to the next tick."""
        if self.client is None:
            return []
        try:
            settled = handback.settle(self.client, self.keys, handback.find_orphans(self.client, self.keys))
        except (redis.RedisError, OSError) as exc:
            logger.warning("hand-back skipped this tick: the broker did not answer (%s)", type(exc).__name__)
            return []
        return [change_for(done) for done in settled]


def change_for(done: handback.Settled) -> Change:
    orphan = done.orphan
    about = orphan.describe()
    task = f"task {about['task'] or '?'} [{about['task_id'] or orphan.tag}]"
    where = f"queue {orphan.queue}" if orphan.queue else f"routing key {orphan.routing_key!r}"
    if done.action == handback.HANDED_BACK:
        message = (f"{task} held {about['held_seconds']} s by a worker that died was handed back to {where} "
                   f"at priority {orphan.priority}")
        kind, status = MetricEvent.HANDED_BACK, WARN
    else:
        message = (f"{task} held {about['held_seconds']} s by a worker that died was NOT handed back "
                   f"({done.reason}); it is parked in the broker's fw:parked hash under tag {orphan.tag}")
        kind, status = MetricEvent.NOT_HANDED_BACK, CRITICAL
    return Change(kind=kind, subject=f"queue:{orphan.queue or orphan.routing_key}", old_status="",
                  new_status=status, message=message, details={**about, "reason": done.reason})
