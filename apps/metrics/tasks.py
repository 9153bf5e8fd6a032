"""Metrics tasks.  Each names its queue in its ``routed_task`` decorator; the
queues are declared in workers/queues.py.

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

from django.db import DatabaseError
from django.utils import timezone

from apps.core.delivery import DELIVERY_ERRORS, post_json, send_email
from apps.metrics.counters import count_alerts
from apps.metrics.models import CRITICAL, MetricEvent, QueueSample, RedisSample, cMetricSettings
from workers.rebuild import run_rebuilders
from workers.routing import routed_task

logger = logging.getLogger("flowwatch.metrics")


@routed_task("trigger_alerts", autoretry_for=DELIVERY_ERRORS, retry_backoff=True, retry_backoff_max=600,
             retry_jitter=True, max_retries=8)
def trigger_alerts(event_ids: list[int]) -> dict[str, int]:
    """Send each event by e-mail and webhook.

    Each channel is tried whatever the other did, and stamps what it
    delivered (``emailed_at``, ``webhook_at``); then a failure is raised, so
    that the retry sends only what is still missing.
    """
    config = cMetricSettings.load()
    events = list(MetricEvent.objects.filter(id__in=event_ids).order_by("at", "id"))
    errors: list[Exception] = []
    to_mail = [e for e in events if e.emailed_at is None] if config.emails else []
    to_post = [e for e in events if e.webhook_at is None] if config.alert_webhook_url else []
    emailed = _deliver("e-mail", errors, len(to_mail), lambda: _email(config.emails, to_mail))
    posted = _deliver("webhook", errors, len(to_post), lambda: _webhook(config.alert_webhook_url, to_post))
    if errors:
        raise errors[0]  # autoretry_for retries the task; the channel that worked is not repeated
    return {"events": len(events), "emailed": emailed, "posted": posted}


def _deliver(channel: str, errors: list[Exception], pending: int, send) -> int:
    """Send through one channel; count the events sent or failed (flowwatch_alerts_sent_total)."""
    try:
        sent = send()
    except DELIVERY_ERRORS as exc:
        logger.warning("alert %s failed (the task retries it): %s", channel, type(exc).__name__)
        errors.append(exc)
        _count(channel, "failed", pending)
        return 0
    _count(channel, "sent", sent)
    return sent


def _count(channel: str, result: str, events: int) -> None:
    """A counter that cannot be written (database away) must not fail the delivery."""
    try:
        count_alerts(channel.replace("-", ""), result, events)
    except DatabaseError:
        logger.warning("could not count %d %s alert(s) as %s: the database did not answer", events, channel, result)


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
    key = idempotency_key(events)
    post_json(url, {"source": "flowwatch", "idempotency_key": key, "events": [e.as_dict() for e in events]},
              idempotency_key=key)
    MetricEvent.objects.filter(id__in=[e.id for e in events]).update(webhook_at=timezone.now())
    return len(events)


def idempotency_key(events: list[MetricEvent]) -> str:
    """The same for every delivery of the same events: a POST that reached the
    receiver but was not stamped (timeout, worker killed) is sent again, and
    the receiver drops it by this key (docs/metrics.md)."""
    return "flowwatch-events-" + "-".join(str(event.id) for event in sorted(events, key=lambda e: e.id))


@routed_task("archive_data")
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


@routed_task("stats_cache")
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
