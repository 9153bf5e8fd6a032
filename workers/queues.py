"""The queue table: every Celery queue Flowwatch uses, declared once.

Celery's ``task_queues``, the supervisor worker programs, the controller's
depth reader, ``probe_queues`` and the metrics page are all derived from
:data:`FAMILIES`.  Adding a queue is one line here; the checklist is in
docs/queues.md.  Tasks name their queue where they are defined, with
``workers.routing.routed_task``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    queue: str
    lane: str
    group: str  # the default worker group that consumes it
    purpose: str


# queue, lane, default worker group, what it does
FAMILIES: tuple[Family, ...] = tuple(
    Family(*row)
    for row in (
        ("messagelog_read", "hot", "hot", "poll new message processing logs per tenant since its watermark"),
        ("messagelog_read_cold", "cold", "cold", "backfill historical logs (onboarding, gaps)"),
        ("messagelog_process_batch", "hot", "hot", "parse and upsert one page of logs"),
        ("messagelog_process_batch_cold", "cold", "cold", "the same for backfill pages"),
        ("messagelog_get_details_hot", "hot", "hot", "error text and attachments of recent failed messages"),
        ("messagelog_get_details_cold", "cold", "background", "the same for backfilled messages"),
        ("messagelog_get_details_alert", "alert", "alert", "details for messages that matched an alert rule"),
        ("messagelog_correlations", "enrich", "enrich", "link messages sharing a correlation id"),
        ("messagelog_customheaders", "enrich", "enrich", "store custom header properties"),
        ("payload_read", "on demand", "enrich", "list message store entries of a message"),
        ("payload_get_details", "on demand", "enrich", "fetch one payload body"),
        ("package_read", "inventory", "background", "read integration packages and their artifacts"),
        ("iflow_download", "inventory", "background", "download iFlow artifact archives"),
        ("trigger_alerts", "alert", "alert", "evaluate alert rules, send notifications"),
        ("periodic_run", "scheduler", "alert", "beat ticks that fan out per-tenant work"),
        ("stats_cache", "maintenance", "background", "rebuild statistics caches"),
        ("archive_data", "maintenance", "background", "move old data to compressed archives"),
        ("ai", "ai", "background", "error clustering and explanations"),
    )
)



@dataclass(frozen=True)
class WorkerGroup:
    name: str
    pool: str  # Celery's --pool for its worker: "threads" or "prefork"
    why: str


# Each group's pool fits its work (docs/queues.md, "Worker groups"; the cost
# of each is measured in docs/performance.md).  threads: one process whose
# tasks wait on the tenant API, SMTP or the database side by side;
# prefork: a process per task, for CPU work, isolation and hard time limits.
GROUPS: tuple[WorkerGroup, ...] = (
    WorkerGroup("hot", "threads", "tenant API reads and upserts: waiting on HTTP and the database"),
    WorkerGroup("cold", "threads", "the same for backfill"),
    WorkerGroup("alert", "threads", "alert details, notifications and beat fan-outs: waiting on HTTP and SMTP"),
    WorkerGroup("enrich", "threads", "correlations, headers, payloads: small reads and writes"),
    WorkerGroup("background", "threads", "the backfill's details, statistics, archives and downloads: HTTP, "
                "SQLite aggregates and gzip, which let go of the GIL while they work, on the core "
                "that worker-cold leaves free"),
)
POOLS = ("threads", "prefork")
BY_GROUP: dict[str, WorkerGroup] = {g.name: g for g in GROUPS}


def check_groups(families: tuple[Family, ...], groups: tuple[WorkerGroup, ...]) -> None:
    """Every family's group is declared once with a pool Celery knows: a typo fails at import."""
    declared = [g.name for g in groups]
    undeclared = sorted({f.group for f in families} - set(declared))
    twice = sorted({name for name in declared if declared.count(name) > 1})
    unknown = sorted(g.name for g in groups if g.pool not in POOLS)
    problems = [f"{what}: {', '.join(names)}" for what, names in (
        ("groups used by a family but not declared in GROUPS", undeclared),
        ("groups declared twice", twice), (f"groups whose pool is not one of {', '.join(POOLS)}", unknown)) if names]
    if problems:
        raise ValueError("workers/queues.py: " + "; ".join(problems))


check_groups(FAMILIES, GROUPS)

QUEUE_NAMES: tuple[str, ...] = tuple(f.queue for f in FAMILIES)
BY_QUEUE: dict[str, Family] = {f.queue: f for f in FAMILIES}

# The queue a task lands in when it names none.  Flowwatch code always routes
# explicitly; this only catches a task nobody routed, and it is consumed.
DEFAULT_QUEUE = "periodic_run"


def worker_groups() -> dict[str, tuple[str, ...]]:
    """Worker group name -> the queues its worker consumes, in table order."""
    groups: dict[str, list[str]] = {}
    for family in FAMILIES:
        groups.setdefault(family.group, []).append(family.queue)
    return {name: tuple(queues) for name, queues in groups.items()}

