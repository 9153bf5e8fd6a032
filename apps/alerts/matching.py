"""Which messages an alert rule counts."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from apps.alerts.models import AlertRule
from apps.messagelogs.models import PROBLEM_STATUSES, MessageLog


def rules_for(tenant_id: int) -> list[AlertRule]:
    return list(AlertRule.objects.filter(Q(tenant_id=tenant_id) | Q(tenant=None), enabled=True))


def glob_regex(pattern: str) -> str:
    """A shell-style pattern as a regex both SQLite (Python's re) and PostgreSQL read alike."""
    parts = {"*": ".*", "?": "."}
    return "^" + "".join(parts.get(c) or re.escape(c) for c in (pattern or "*")) + "$"


def alert_candidates(tenant_id: int, message_ids: list[int]) -> list[int]:
    """The messages some rule may count, by status and iFlow.

    A rule's header condition is left to :func:`matching_messages`: a page's
    headers are stored by their own task, which may not have run yet.  A
    candidate that fails it only took the alert lane for its details.
    """
    rules = rules_for(tenant_id)
    if not rules or not message_ids:
        return []
    rows = MessageLog.objects.filter(id__in=message_ids).values_list("id", "status", "iflow_name")
    return [message_id for message_id, status, iflow in rows
            if any(status in r.status_set and fnmatch.fnmatchcase(iflow, r.iflow_pattern or "*") for r in rules)]


def matching_messages(rule: AlertRule, tenant_id: int, now: datetime) -> QuerySet:
    """Messages of the rule's window that it matches and has not counted yet.

    Messages in a problem status count once their details are stored, so
    that the alert carries their error text.
    """
    messages = (MessageLog.objects.filter(tenant_id=tenant_id, status__in=rule.status_set,
                                          log_end__gte=now - timedelta(minutes=rule.window_minutes))
                .filter(Q(details_at__isnull=False) | ~Q(status__in=PROBLEM_STATUSES))
                .exclude(alert_links__rule=rule))
    if (rule.iflow_pattern or "*") != "*":
        messages = messages.filter(iflow_name__regex=glob_regex(rule.iflow_pattern))
    if rule.header_name:
        messages = messages.filter(custom_headers__name=rule.header_name,
                                   custom_headers__value__regex=glob_regex(rule.header_value)).distinct()
    return messages.order_by("log_end")
