"""The probe task behind ``manage.py probe_queues``: one per declared queue."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task


@shared_task(name="workers.probe.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self, queue: str, sent_at: float) -> dict[str, Any]:
    """Answer who consumed the probe, from which queue, and when."""
    delivery = self.request.delivery_info or {}
    return {
        "queue": queue,
        "routing_key": delivery.get("routing_key"),
        "worker": self.request.hostname,
        "sent_at": sent_at,
        "received_at": time.time(),
    }
