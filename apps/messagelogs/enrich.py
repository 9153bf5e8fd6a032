"""What a message gains after it is stored: error text, attachments, custom headers, its chain."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Max, Min
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


def store_details(message: MessageLog, client) -> None:
    """Fetch and store the error text and attachment list of one message."""
    text = client.error_text(message.guid) or ""
    attachments = [
        MessageAttachment(message=message, attachment_id=str(a.get("Id", ""))[:200],
                          name=str(a.get("Name") or "")[:300], content_type=str(a.get("ContentType") or "")[:100], size=_size(a.get("PayloadSize")),
                          timestamp=_odata_time(a.get("TimeStamp")))
        for a in client.attachments(message.guid)
    ]
    with transaction.atomic():
        MessageAttachment.objects.filter(message=message).delete()
        MessageAttachment.objects.bulk_create(attachments, ignore_conflicts=True)
        MessageLog.objects.filter(id=message.id).update(error_text=text, details_at=timezone.now())
    message.error_text = text


def store_headers(message: MessageLog, client) -> None:
    """Fetch and store the custom header properties of one message (replacing what was stored)."""
    headers = [CustomHeader(message=message, header_id=str(h.get("Id") or "")[:200],
                            name=str(h.get("Name") or "")[:200], value=str(h.get("Value") or ""))
               for h in client.custom_headers(message.guid)]
    with transaction.atomic():
        CustomHeader.objects.filter(message=message).delete()
        CustomHeader.objects.bulk_create(headers)
        MessageLog.objects.filter(id=message.id).update(headers_at=timezone.now())


def link_correlations(tenant_id: int, correlation_ids: list[str]) -> int:
    """Link every message of each correlation id to its chain and refresh the chain's figures."""
    linked = 0
    for correlation_id in correlation_ids:
        with transaction.atomic():
            chain, _ = Correlation.objects.get_or_create(tenant_id=tenant_id, correlation_id=correlation_id)
            members = MessageLog.objects.filter(tenant_id=tenant_id, correlation_id=correlation_id)
            members.exclude(chain=chain).update(chain=chain)
            figures = members.aggregate(count=Count("id"), first=Min("log_start"), last=Max("log_end"))
            statuses = sorted(set(members.values_list("status", flat=True)))
            Correlation.objects.filter(id=chain.id).update(
                message_count=figures["count"], first_log_start=figures["first"], last_log_end=figures["last"],
                statuses=",".join(statuses)[:200])
            linked += figures["count"]
    return linked
