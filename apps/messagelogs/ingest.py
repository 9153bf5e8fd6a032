"""Processing one staged page: an idempotent bulk upsert on (tenant, MessageGuid).

A page is claimed by deleting its staging row inside the upsert's
transaction: a page processed twice, or by two workers at once, is stored
once.  A known message changes only when the page holds a newer state of it
(a later LogEnd, or the same LogEnd with another status), so re-sending an
old page changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from django.db import transaction
from django.utils import timezone

from apps.messagelogs.models import PROBLEM_STATUSES, LogPage, MessageLog

UPDATED_FIELDS = ("correlation_id", "application_message_id", "iflow_name", "status", "custom_status",
                  "sender", "receiver", "log_start", "log_end")


class BadPage(ValueError):
    """A page with an entry that cannot be stored; nothing of it is stored."""


@dataclass
class Upserted:
    created: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    problems: list[int] = field(default_factory=list)  # created or changed into a problem status
    correlation_ids: set[str] = field(default_factory=set)
    lane: str = "hot"
    tenant_id: int = 0


@lru_cache(maxsize=None)
def _limits() -> dict[str, int | None]:
    return {name: MessageLog._meta.get_field(name).max_length for name in ("guid", *UPDATED_FIELDS)}


def stored_fields(row: dict) -> dict:
    """The row's values the model keeps, text clipped to its column (PostgreSQL enforces lengths)."""
    kept = {}
    for name, limit in _limits().items():
        value = row.get(name)
        if limit and isinstance(value, str):
            value = value[:limit]
        kept[name] = "" if value is None and limit else value
    return kept


def parse_entries(entries: list[dict]) -> list[dict]:
    """Every entry parsed, the latest state of each MessageGuid kept; BadPage names a bad one."""
    from apps.tenants.client import TenantError, parse_log

    latest: dict[str, dict] = {}
    for index, entry in enumerate(entries):
        try:
            row = stored_fields(parse_log(entry))
        except TenantError as exc:
            raise BadPage(f"entry {index} of the page cannot be stored: {exc}") from None
        kept = latest.get(row["guid"])
        if kept is None or row["log_end"] >= kept["log_end"]:
            latest[row["guid"]] = row
    return list(latest.values())


def is_newer(row: dict, known: MessageLog) -> bool:
    if row["log_end"] != known.log_end:
        return row["log_end"] > known.log_end
    return row["status"] != known.status


def process_page(page_id: int) -> Upserted | None:
    """Store page ``page_id``; None when it was processed already."""
    page = LogPage.objects.filter(id=page_id).first()
    if page is None:
        return None
    try:
        rows = parse_entries(page.entries)
    except BadPage as exc:
        LogPage.objects.filter(id=page_id).update(error=str(exc))
        raise
    with transaction.atomic():
        if not LogPage.objects.filter(id=page_id).delete()[0]:
            return None  # another worker stored it meanwhile
        result = upsert(page.tenant_id, rows)
    result.lane = page.lane
    return result


def upsert(tenant_id: int, rows: list[dict]) -> Upserted:
    result = Upserted(tenant_id=tenant_id)
    known = {m.guid: m for m in MessageLog.objects.filter(tenant_id=tenant_id, guid__in=[r["guid"] for r in rows])
             .only("id", "guid", "status", "log_end")}
    now = timezone.now()
    fresh = [MessageLog(tenant_id=tenant_id, **row) for row in rows if row["guid"] not in known]
    MessageLog.objects.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    changed = []
    for row in rows:
        message = known.get(row["guid"])
        if message is not None and is_newer(row, message):
            for name in UPDATED_FIELDS:
                setattr(message, name, row[name])
            message.updated_at = now
            message.details_at = None  # a new state may carry a new error
            changed.append(message)
    MessageLog.objects.bulk_update(changed, [*UPDATED_FIELDS, "updated_at", "details_at"], batch_size=500)
    ids = dict(MessageLog.objects.filter(tenant_id=tenant_id, guid__in=[m.guid for m in fresh])
               .values_list("guid", "id")) if fresh else {}
    result.created = [ids[m.guid] for m in fresh if m.guid in ids]
    result.changed = [m.id for m in changed]
    statuses = {r["guid"]: r["status"] for r in rows}
    guid_of = {**{v: k for k, v in ids.items()}, **{m.id: m.guid for m in changed}}
    result.problems = [i for i in result.created + result.changed if statuses[guid_of[i]] in PROBLEM_STATUSES]
    result.correlation_ids = {r["correlation_id"] for r in rows if r["correlation_id"]
                              and (r["guid"] in ids or r["guid"] in {m.guid for m in changed})}
    return result
