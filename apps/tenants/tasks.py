"""``periodic_run``: the beat tick that fans out per-tenant work (queue ``periodic_run``).

Every tick (BEAT_TABLE in config/settings.py) it queues a hot read for each
enabled tenant whose poll interval elapsed, claiming the tenant with a
conditional UPDATE so two ticks never queue the same poll; it sends again
backfill windows whose read was lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import OperationalError, transaction
from django.utils import timezone

from apps.core.dispatch import send_on_commit
from apps.tenants.models import BackfillWindow, Tenant
from workers.routing import routed_task

logger = logging.getLogger("flowwatch.tenants")

# A backfill window queued this long ago and still not done lost its task.
WINDOW_RESEND_AFTER = timedelta(minutes=30)
WINDOW_RESEND_LIMIT = 50


def due_tenants(now) -> list[int]:
    """Enabled tenants whose poll interval elapsed, each claimed by this tick only."""
    claimed = []
    for tenant_id, last, interval in Tenant.objects.filter(enabled=True).values_list(
            "id", "last_poll_at", "poll_interval"):
        if last is not None and now - last < timedelta(seconds=interval):
            continue
        # Only the tick that still sees the old value wins the tenant.
        if Tenant.objects.filter(id=tenant_id, last_poll_at=last).update(last_poll_at=now):
            claimed.append(tenant_id)
    return claimed


def resend_lost_windows(now) -> list[int]:
    from apps.messagelogs.tasks import messagelog_read_cold

    stale = list(BackfillWindow.objects.filter(done_at=None, tenant__enabled=True,
                                               sent_at__lt=now - WINDOW_RESEND_AFTER)
                 .values_list("id", flat=True)[:WINDOW_RESEND_LIMIT])
    for window_id in stale:
        if BackfillWindow.objects.filter(id=window_id, done_at=None).update(sent_at=now):
            send_on_commit(messagelog_read_cold, window_id)
    return stale


@routed_task("periodic_run", name="apps.tenants.tasks.periodic_run", autoretry_for=(OperationalError,),
             retry_backoff=True, retry_jitter=True, max_retries=3)
def periodic_run() -> dict:
    from apps.messagelogs.tasks import messagelog_read

    now = timezone.now()
    with transaction.atomic():
        tenants = due_tenants(now)
        for tenant_id in tenants:
            send_on_commit(messagelog_read, tenant_id)
        windows = resend_lost_windows(now)
    return {"reads": len(tenants), "windows_resent": len(windows)}
