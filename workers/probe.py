"""The probe task behind ``manage.py probe_queues``: one per declared queue."""

from __future__ import annotations

import time
from typing import Any

from workers.queues import DEFAULT_QUEUE
from workers.routing import routed_task

MAX_HOLD_SECONDS = 30.0


# Declared on the default queue; probe_queues sends each probe to one queue (queue=...).
@routed_task(DEFAULT_QUEUE, name="workers.probe.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self, queue: str, sent_at: float, hold_seconds: float = 0.0) -> dict[str, Any]:
    """Answer who consumed the probe, from which queue, and when.

    ``hold_seconds`` keeps the worker busy that long first: it lets an
    operator (and the stack test) check that a stop waits for running tasks.
    """
    delivery = self.request.delivery_info or {}
    if hold_seconds > 0:
        time.sleep(min(hold_seconds, MAX_HOLD_SECONDS))
    return {
        "queue": queue,
        "routing_key": delivery.get("routing_key"),
        "worker": self.request.hostname,
        "sent_at": sent_at,
        "received_at": time.time(),
    }
