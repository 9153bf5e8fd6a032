"""``archive_messagelogs`` (queue ``archive_data``): message logs past MESSAGELOG_RETENTION_DAYS
move to archive files.  Metric history is pruned by ``apps.metrics.tasks.prune_history``."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from apps.archives.archiving import archive_before
from workers.routing import routed_task

logger = logging.getLogger("flowwatch.archives")


@routed_task("archive_data", name="apps.archives.tasks.archive_messagelogs",
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, retry_backoff_max=600,
             retry_jitter=True, max_retries=5)
def archive_messagelogs() -> dict:
    cutoff = timezone.now() - timedelta(days=settings.MESSAGELOG_RETENTION_DAYS)
    done = archive_before(cutoff)
    if done:
        logger.info("archived %d message logs into %d files", sum(a.rows for a in done), len(done))
    return {"files": [a.name for a in done], "rows": sum(a.rows for a in done)}
