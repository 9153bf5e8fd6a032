"""Processing one staged page: an idempotent bulk upsert on (tenant, MessageGuid).

A page is claimed by deleting its staging row inside the upsert's
transaction: a page processed twice, or by two workers at once, is stored
once.  A known message changes only when the page holds a newer state of it
(a later LogEnd, or the same LogEnd with another status), so re-sending an
old page changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

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
    # [message id, [[Id, Name, Value], ...]] of the created or changed messages whose page
    # carried their custom headers ($expand); the others' headers are fetched one by one.
    headers: list[list] = field(default_factory=list)
    lane: str = "hot"
    tenant_id: int = 0

    @property
    def headers_unknown(self) -> list[int]:
        """Problem messages whose headers the page did not carry."""
        known = {message_id for message_id, _ in self.headers}
        return [i for i in self.problems if i not in known]


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


def expanded_headers(entry: dict) -> list[list] | None:
    """[[Id, Name, Value], ...] of an entry whose CustomHeaderProperties came expanded, else None.

    A tenant sends them as ``{"results": [...]}`` (or a bare list) when asked
    for ``$expand=CustomHeaderProperties``, as ``{"__deferred": ...}`` otherwise.
    """
    from apps.tenants.client import TenantResponseError

    found = entry.get("CustomHeaderProperties")
    if isinstance(found, dict):
        found = found.get("results")
    if not isinstance(found, list):
        return None
    headers = []
    for header in found:
        row = [header.get(k) for k in ("Id", "Name", "Value")] if isinstance(header, dict) else [None] * 3
        if not isinstance(row[1], str) or not all(isinstance(v, (str, type(None))) for v in row):
            raise TenantResponseError(f"a custom header property needs a string Name, Id and Value: {header!r}")
        headers.append([(row[0] or "")[:200], row[1][:200], row[2] or ""])
    return headers


def parse_entries(entries: list[dict]) -> list[dict]:
    """Every entry parsed, the latest state of each MessageGuid kept; BadPage names a bad one."""
    from apps.tenants.client import TenantError, parse_log

    latest: dict[str, dict] = {}
    for index, entry in enumerate(entries):
        try:
            row = stored_fields(parse_log(entry))
            row["headers"] = expanded_headers(entry)
        except TenantError as exc:
            raise BadPage(f"entry {index} of the page cannot be stored: {exc}") from None
        kept = latest.get(row["guid"])
        if kept is None or row["log_end"] >= kept["log_end"]:
            latest[row["guid"]] = row
    return list(latest.values())


class Known(NamedTuple):
    """What the upsert needs of a stored message."""
    id: int
    status: str
    log_end: datetime


def is_newer(row: dict, known: Known) -> bool:
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


def _stored(tenant_id: int, guids: list[str]) -> dict[str, Known]:
    # Tuples, not model instances: building 1000 instances was a third of storing a page.
    rows = MessageLog.objects.filter(tenant_id=tenant_id, guid__in=guids).values_list("guid", "id", "status", "log_end")
    return {guid: Known(*rest) for guid, *rest in rows}


def update_changed(changed: list[tuple[dict, Known]], now) -> None:
    """One executemany UPDATE of the messages whose page state is newer; their details are fetched anew."""
    if not changed:
        return
    adapt = connection.ops.adapt_datetimefield_value
    assignments = ", ".join(f"{name} = %s" for name in (*UPDATED_FIELDS, "updated_at"))
    values = [(*(adapt(row[n]) if n in ("log_start", "log_end") else row[n] for n in UPDATED_FIELDS),
               adapt(now), known.id) for row, known in changed]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {MessageLog._meta.db_table} SET {assignments}, details_at = NULL "
                           "WHERE id = %s", values)


def upsert(tenant_id: int, rows: list[dict]) -> Upserted:
    """Insert the unknown messages, then update those whose stored state is older than the page's.

    The second look happens after the insert: a message another worker
    inserted meanwhile (PostgreSQL lets two pages with one message commit
    side by side) is compared like any known one, so its newer state wins
    whichever page came first.
    """
    guids = [r["guid"] for r in rows]
    known = _stored(tenant_id, guids)
    fresh = [g for g in guids if g not in known]
    fresh_set = set(fresh)
    if fresh:
        insert_new(tenant_id, [r for r in rows if r["guid"] in fresh_set])
        known.update(_stored(tenant_id, fresh))
    created, changed = [], []
    for row in rows:
        message = known[row["guid"]]
        if is_newer(row, message):
            changed.append((row, message))  # a new state may carry a new error: details again
        elif row["guid"] in fresh_set:
            created.append((row, message))
    update_changed(changed, timezone.now())
    return summarize(tenant_id, created, changed)


def summarize(tenant_id: int, created: list[tuple[dict, Known]], changed: list[tuple[dict, Known]]) -> Upserted:
    """What the follow-up tasks need: ids of new and changed messages, problems, correlation ids."""
    touched = created + changed
    return Upserted(
        tenant_id=tenant_id,
        created=[m.id for _, m in created],
        changed=[m.id for _, m in changed],
        problems=[m.id for row, m in touched if row["status"] in PROBLEM_STATUSES],
        correlation_ids={row["correlation_id"] for row, _ in touched if row["correlation_id"]},
        headers=[[m.id, row["headers"]] for row, m in touched if row["headers"] is not None],
    )
