"""What a message gains after it is stored: error text, attachments, custom headers, its chain."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Subquery
from django.utils import timezone

from apps.messagelogs.models import Correlation, CustomHeader, MessageAttachment, MessageLog

logger = logging.getLogger("flowwatch.messagelogs")


def _odata_time(value: object) -> datetime | None:
    from apps.tenants.client import parse_odata_date

    try:
        return parse_odata_date(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _size(value: object) -> int | None:
    try:
        return int(value)  # Edm.Int64 arrives as a string
    except (TypeError, ValueError):
        return None


def fetch_details(message: MessageLog, client) -> tuple[str, list[MessageAttachment]]:
    """The error text and attachment list of one message, from the tenant (no database write)."""
    text = client.error_text(message.guid) or ""
    attachments = [
        MessageAttachment(message=message, attachment_id=str(a.get("Id", ""))[:200],
                          name=str(a.get("Name") or "")[:300], content_type=str(a.get("ContentType") or "")[:100],
                          size=_size(a.get("PayloadSize")),
                          timestamp=_odata_time(a.get("TimeStamp")))
        for a in client.attachments(message.guid)
    ]
    return text, attachments


def save_details(found: dict[int, tuple[str, list[MessageAttachment]]]) -> None:
    """Store fetched details of several messages in one short transaction (a few queries in all)."""
    if not found:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        present = set(MessageLog.objects.filter(id__in=found).values_list("id", flat=True))  # not archived meanwhile
        MessageAttachment.objects.filter(message_id__in=present).delete()
        MessageAttachment.objects.bulk_create([a for i in present for a in found[i][1]], ignore_conflicts=True)
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {MessageLog._meta.db_table} SET error_text = %s, details_at = %s WHERE id = %s",
                               [(found[i][0], now, i) for i in present])


def store_details(message: MessageLog, client) -> None:
    """Fetch and store the error text and attachment list of one message."""
    text, attachments = fetch_details(message, client)
    save_details({message.id: (text, attachments)})
    message.error_text = text


def store_headers(message: MessageLog, client) -> None:
    """Fetch and store the custom header properties of one message (replacing what was stored)."""
    save_headers([[message.id, [[h.get("Id") or "", h.get("Name") or "", h.get("Value") or ""]
                                for h in client.custom_headers(message.guid)]]])


def save_headers(headers: list[list]) -> int:
    """Store ``[[message id, [[Id, Name, Value], ...]], ...]``, replacing what each message had.

    One transaction for all of them: the headers a page carried ($expand) are
    stored in bulk.  Messages gone meanwhile (archived) are skipped.  Returns
    how many messages were stored.
    """
    wanted = {int(message_id): rows for message_id, rows in headers}
    now = timezone.now()
    with transaction.atomic():
        present = list(MessageLog.objects.filter(id__in=wanted).values_list("id", flat=True))
        CustomHeader.objects.filter(message_id__in=present).delete()
        with connection.cursor() as cursor:  # bulk_create builds each row's SQL in Python: slower
            cursor.executemany(f"INSERT INTO {CustomHeader._meta.db_table} (message_id, header_id, name, value) "
                               "VALUES (%s, %s, %s, %s)",
                               [(i, str(h_id or "")[:200], str(name or "")[:200], str(value or ""))
                                for i in present for h_id, name, value in wanted[i]])
        MessageLog.objects.filter(id__in=present).update(headers_at=now)
    return len(present)


def _update_chains(rows: list[tuple[dict, str, int]]) -> None:
    """One executemany for the chains' figures (bulk_update's CASE WHEN costs more than the rest)."""
    adapt = connection.ops.adapt_datetimefield_value
    table = Correlation._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET message_count = %s, first_log_start = %s, last_log_end = %s, statuses = %s "
            "WHERE id = %s",
            [(f["count"], adapt(f["first"]), adapt(f["last"]), text, chain_id) for f, text, chain_id in rows])


def link_correlations(tenant_id: int, correlation_ids: list[str]) -> int:
    """Link the messages of each correlation id shared by two or more messages to its chain.

    Set-based, in one short transaction: a few queries per call however many
    ids it gets, so chains never hold the write lock long against page
    upserts.  A lone message has no chain until a second one shares its id.
    """
    members = MessageLog.objects.filter(tenant_id=tenant_id, correlation_id__in=correlation_ids)
    figures = {row["correlation_id"]: row for row in members.values("correlation_id").annotate(
        count=Count("id"), first=Min("log_start"), last=Max("log_end")) if row["count"] > 1}
    if not figures:
        return 0
    statuses: dict[str, set[str]] = {}
    for correlation_id, status in members.filter(correlation_id__in=figures).values_list(
            "correlation_id", "status").distinct():
        statuses.setdefault(correlation_id, set()).add(status)
    with transaction.atomic():
        Correlation.objects.bulk_create([Correlation(tenant_id=tenant_id, correlation_id=c) for c in figures],
                                        ignore_conflicts=True)
        chains = Correlation.objects.filter(tenant_id=tenant_id, correlation_id__in=figures)
        _update_chains([(figures[c], ",".join(sorted(statuses.get(c, ())))[:200], chain_id)
                        for c, chain_id in chains.values_list("correlation_id", "id")])
        chain_of = Correlation.objects.filter(tenant_id=OuterRef("tenant_id"),
                                              correlation_id=OuterRef("correlation_id"))
        members.filter(correlation_id__in=figures).update(chain=Subquery(chain_of.values("id")[:1]))
    return sum(row["count"] for row in figures.values())
