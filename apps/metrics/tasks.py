"""Metrics tasks.  Their queues are declared, and routed, in workers/queues.py.

* ``trigger_alerts`` (queue ``trigger_alerts``): e-mail and webhook for events;
* ``prune_history`` (queue ``archive_data``): drops history and events older
  than ``history_retention_days``;
* ``rebuild_caches`` (queue ``stats_cache``): runs the registered cache
  rebuilders (workers/rebuild.py), queued by the controller after a Redis
  restart and by beat.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from apps.core.delivery import DELIVERY_ERRORS, post_json, send_email
from apps.core.delivery import deliver as _deliver
from apps.metrics.models import CRITICAL, MetricEvent, QueueSample, RedisSample, cMetricSettings
from workers.rebuild import run_rebuilders

logger = logging.getLogger("flowwatch.metrics")


@shared_task(name="apps.metrics.tasks.trigger_alerts",
             autoretry_for=DELIVERY_ERRORS, retry_backoff=True, retry_backoff_max=600, retry_jitter=True,
             max_retries=8)
def trigger_alerts(event_ids: list[int]) -> dict[str, int]:
    """Send each event by e-mail and webhook.

    Each channel is tried whatever the other did, and stamps what it
    delivered (``emailed_at``, ``webhook_at``); then a failure is raised, so
    that the retry sends only what is still missing.
    """
    config = cMetricSettings.load()
    events = list(MetricEvent.objects.filter(id__in=event_ids).order_by("at", "id"))
    errors: list[Exception] = []
    emailed = _deliver("e-mail", errors, lambda: _email(config.emails, [e for e in events if e.emailed_at is None]))
    posted = _deliver("webhook", errors,
                      lambda: _webhook(config.alert_webhook_url, [e for e in events if e.webhook_at is None]))
    if errors:
        raise errors[0]  # autoretry_for retries the task; the channel that worked is not repeated
    return {"events": len(events), "emailed": emailed, "posted": posted}


def _email(recipients: list[str], events: list[MetricEvent]) -> int:
    if not recipients or not events:
        return 0
    worst = "critical" if any(e.new_status == CRITICAL for e in events) else "notice"
    subject = f"[Flowwatch {worst}] {events[0].message[:120]}"
    if len(events) > 1:
        subject += f" (+{len(events) - 1} more)"
    body = "\n".join(f"{e.at:%Y-%m-%d %H:%M:%S} UTC  {e.subject}: {e.message}" for e in events)
    send_email(recipients, subject, body)
    MetricEvent.objects.filter(id__in=[e.id for e in events]).update(emailed_at=timezone.now())
    return len(events)


def _webhook(url: str, events: list[MetricEvent]) -> int:
    if not url or not events:
        return 0
    post_json(url, {"source": "flowwatch", "events": [e.as_dict() for e in events]})
    MetricEvent.objects.filter(id__in=[e.id for e in events]).update(webhook_at=timezone.now())
    return len(events)


@shared_task(name="apps.metrics.tasks.prune_history")
def prune_history() -> dict[str, int]:
    """Delete per-minute history and events older than history_retention_days."""
    cutoff = timezone.now() - timedelta(days=cMetricSettings.load().history_retention_days)
    counts = {
        "queue_samples": QueueSample.objects.filter(minute__lt=cutoff).delete()[0],
        "redis_samples": RedisSample.objects.filter(minute__lt=cutoff).delete()[0],
        "events": MetricEvent.objects.filter(at__lt=cutoff).delete()[0],
    }
    logger.info("pruned metrics history older than %s: %s", cutoff.isoformat(), counts)
    return counts


@shared_task(name="apps.metrics.tasks.rebuild_caches")
def rebuild_caches(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the registered cache rebuilders (all, or the named ones) and log what ran."""
    results = run_rebuilders(names)
    if not results:
        logger.warning("rebuild_caches: no cache rebuilder registered%s",
                       f" under {', '.join(names)}" if names else "")
    for result in results:
        if result.ok:
            logger.info("rebuild_caches: %s rebuilt in %.2f s", result.name, result.seconds)
        else:
            logger.error("rebuild_caches: %s failed after %.2f s: %s", result.name, result.seconds, result.error)
    return [vars(result) for result in results]
