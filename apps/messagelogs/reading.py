"""Reading message processing logs from a tenant: hot follow-up and cold backfill.

Hot reads ask for ``LogEnd ge watermark - overlap and LogEnd lt now - lag``:
the overlap re-reads the last minutes, because a message still in RETRY or
PROCESSING comes back later with a new LogEnd and Status; the lag leaves the
tenant time to finish writing its latest logs.  Each page is committed to a
:class:`LogPage` row first, then the watermark moves, then the page's
processing is queued.  A tenant seen for the first time, or one whose
watermark lies further back than one hot read may reach, gets the missing
span as cold :class:`BackfillWindow` rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.dispatch import send_on_commit
from apps.messagelogs.models import COLD, HOT, LogPage
from apps.tenants.odata import LOG_FIELDS, LOG_PAGE_SIZE
from apps.tenants.models import BackfillWindow, Tenant

logger = logging.getLogger("flowwatch.messagelogs")


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=getattr(settings, name))


# Reads ask for only the fields processing reads ($select): a smaller page to receive
# and to parse (docs/pipeline.md); from a tenant that ignores $select, slim() keeps only them.
STAGED_FIELDS = LOG_FIELDS
EXPAND = "CustomHeaderProperties"  # headers come with the page: no call per message for them


def slim(entry: dict) -> dict:
    """The entry with only what processing reads: 40 % of the JSON to stage and load again."""
    kept = {name: entry[name] for name in STAGED_FIELDS if name in entry}
    artifact = kept.get("IntegrationArtifact")
    if isinstance(artifact, dict):
        kept["IntegrationArtifact"] = {k: v for k, v in artifact.items() if k != "__metadata"}
    headers = kept.get("CustomHeaderProperties")
    found = headers.get("results") if isinstance(headers, dict) else headers
    if isinstance(found, list):
        kept["CustomHeaderProperties"] = [{k: v for k, v in h.items() if k != "__metadata"}
                                          if isinstance(h, dict) else h for h in found]
    elif headers is not None:
        del kept["CustomHeaderProperties"]  # deferred: fetched per message later
    return kept


def stage_page(tenant_id: int, lane: str, entries: list[dict], process_task) -> int:
    """Commit one page of entries (slimmed) and queue its processing; returns the page id."""
    entries = [slim(e) if isinstance(e, dict) else e for e in entries]
    with transaction.atomic():
        page = LogPage.objects.create(tenant_id=tenant_id, lane=lane, entries=entries)
        send_on_commit(process_task, page.id)
    return page.id


def page_log_end(entries: list[dict]) -> datetime | None:
    """The largest LogEnd of a page's entries (None when no entry has a readable one)."""
    from apps.tenants.client import parse_odata_date

    ends = []
    for entry in entries:
        try:
            ends.append(parse_odata_date(entry.get("LogEnd")))
        except (TypeError, ValueError, AttributeError):
            continue  # processing names the bad entry; the watermark only needs the good ones
    return max(ends) if ends else None


def read_pages(client, start: datetime, end: datetime, on_page: Callable[[list[dict]], None]) -> tuple[int, int]:
    """Hand every page of [start, end) to ``on_page``; returns (pages, entries)."""
    pages = entries = 0
    for page in client.message_logs(start, end, expand=EXPAND, select=STAGED_FIELDS, page_size=LOG_PAGE_SIZE):
        if page.entries:
            on_page(page.entries)
        pages += 1
        entries += len(page.entries)
        del page  # not held while the next page is read (Client.message_logs)
    return pages, entries


def hot_read(tenant: Tenant, client, process_task, cold_task, extend_lock: Callable[[], object]) -> dict:
    """One incremental read of ``tenant``; the caller holds the tenant's read lock."""
    now = timezone.now()
    until = now - _seconds("MESSAGELOG_READ_LAG_SECONDS")
    if tenant.watermark is None:
        plan_backfill(tenant, until - timedelta(days=tenant.backfill_days), until, cold_task)
        Tenant.objects.filter(id=tenant.id).update(watermark=until, last_read_at=now, last_error="")
        return {"pages": 0, "entries": 0, "onboarded": True}
    start = tenant.watermark - _seconds("MESSAGELOG_OVERLAP_SECONDS")
    reach = until - _seconds("MESSAGELOG_HOT_MAX_SECONDS")
    if start < reach:  # a gap: the hot read takes the recent part, backfill the rest
        oldest = max(start, until - timedelta(days=tenant.backfill_days))
        plan_backfill(tenant, oldest, reach, cold_task)
        start = reach

    # Only the holder of the tenant's read lock writes its watermark.
    watermark = tenant.watermark

    def on_page(entries: list[dict]) -> None:
        nonlocal watermark
        stage_page(tenant.id, HOT, entries, process_task)
        seen = page_log_end(entries)
        if seen is not None and seen > watermark:
            watermark = seen
            Tenant.objects.filter(id=tenant.id).update(watermark=watermark)
        extend_lock()

    pages, entries = read_pages(client, start, until, on_page)
    # Every page of the window is stored: the whole window is read.
    Tenant.objects.filter(id=tenant.id).update(watermark=max(watermark, until), last_read_at=now, last_error="")
    return {"pages": pages, "entries": entries}


def windows(start: datetime, end: datetime, size: timedelta) -> Iterable[tuple[datetime, datetime]]:
    """[start, end) cut into spans of ``size``, newest first."""
    cursor = end
    while cursor > start:
        yield max(start, cursor - size), cursor
        cursor -= size


def plan_backfill(tenant: Tenant, start: datetime, end: datetime, cold_task) -> int:
    """Create the cold windows of [start, end) and queue their reads; returns how many."""
    if end <= start:
        return 0
    size = _seconds("MESSAGELOG_BACKFILL_WINDOW_SECONDS")
    now = timezone.now()
    rows = [BackfillWindow(tenant=tenant, start=a, end=b, sent_at=now) for a, b in windows(start, end, size)]
    with transaction.atomic():
        BackfillWindow.objects.bulk_create(rows, ignore_conflicts=True)
        ids = list(BackfillWindow.objects.filter(tenant=tenant, start__gte=start, end__lte=end, done_at=None)
                   .values_list("id", flat=True))
        for window_id in ids:
            send_on_commit(cold_task, window_id)
    logger.info("tenant %s: %d backfill windows planned from %s to %s", tenant.name, len(ids),
                start.isoformat(), end.isoformat())
    return len(ids)


def cold_read(window: BackfillWindow, client, process_task, extend_lock: Callable[[], object]) -> dict:
    """Read one backfill window; it is done only when every page is staged."""

    def on_page(entries: list[dict]) -> None:
        stage_page(window.tenant_id, COLD, entries, process_task)
        extend_lock()

    pages, entries = read_pages(client, window.start, window.end, on_page)
    BackfillWindow.objects.filter(id=window.id).update(done_at=timezone.now(), pages=pages, entries=entries,
                                                       last_error="")
    return {"pages": pages, "entries": entries}
