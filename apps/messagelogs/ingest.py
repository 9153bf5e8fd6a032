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

from django.db import connection, transaction
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


INSERTED = ("guid", *UPDATED_FIELDS, "error_text", "first_seen_at", "updated_at")


def insert_new(tenant_id: int, rows: list[dict]) -> None:
    """INSERT the rows, skipping any (tenant, guid) stored meanwhile, in one executemany.

    What bulk_create(ignore_conflicts=True) does, without building each row's
    SQL in Python: that was half the time of storing a page.
    """
    if not rows:
        return
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    columns = ", ".join(("tenant_id", *INSERTED))
    marks = ", ".join(["%s"] * (len(INSERTED) + 1))
    values = [(tenant_id, r["guid"], *(adapt(r[n]) if n in ("log_start", "log_end") else r[n] for n in UPDATED_FIELDS),
               "", now, now) for r in rows]
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {MessageLog._meta.db_table} ({columns}) VALUES ({marks}) "
                           "ON CONFLICT DO NOTHING", values)


def _stored(tenant_id: int, guids: list[str]) -> dict[str, MessageLog]:
    return {m.guid: m for m in MessageLog.objects.filter(tenant_id=tenant_id, guid__in=guids)
            .only("id", "guid", "status", "log_end")}


def upsert(tenant_id: int, rows: list[dict]) -> Upserted:
    """Insert the unknown messages, then update those whose stored state is older than the page's.

    The second look happens after the insert: a message another worker
    inserted meanwhile (PostgreSQL lets two pages with one message commit
    side by side) is compared like any known one, so its newer state wins
    whichever page came first.
    """
    guids = [r["guid"] for r in rows]
    known = _stored(tenant_id, guids)
    fresh = {g for g in guids if g not in known}
    insert_new(tenant_id, [r for r in rows if r["guid"] in fresh])
    stored = _stored(tenant_id, guids) if fresh else known
    now = timezone.now()
    created, changed = [], []
    for row in rows:
        message = stored[row["guid"]]
        if is_newer(row, message):
            for name in UPDATED_FIELDS:
                setattr(message, name, row[name])
            message.updated_at = now
            message.details_at = None  # a new state may carry a new error
            changed.append((row, message))
        elif row["guid"] in fresh:
            created.append((row, message))
    MessageLog.objects.bulk_update([m for _, m in changed], [*UPDATED_FIELDS, "updated_at", "details_at"],
                                   batch_size=500)
    return summarize(tenant_id, created, changed)


def summarize(tenant_id: int, created: list[tuple[dict, MessageLog]],
              changed: list[tuple[dict, MessageLog]]) -> Upserted:
    """What the follow-up tasks need: ids of new and changed messages, problems, correlation ids."""
    touched = created + changed
    return Upserted(
        tenant_id=tenant_id,
        created=[m.id for _, m in created],
        changed=[m.id for _, m in changed],
        problems=[m.id for row, m in touched if row["status"] in PROBLEM_STATUSES],
        correlation_ids={row["correlation_id"] for row, _ in touched if row["correlation_id"]},
    )
