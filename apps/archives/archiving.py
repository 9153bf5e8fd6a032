"""Moving old message logs into gzip JSONL files under ARCHIVE_DIR.

A file is written to a temporary name, fsynced, renamed into place (and the
folder fsynced), then read back and compared with what was meant to be in
it; only then, in one transaction, is its index row created and its rows
deleted.  A run stopped half-way leaves its rows in the database: at worst a
file without an index row, which the next run overwrites under the same name.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.archives.models import ArchiveFile
from apps.messagelogs.models import MessageLog
from apps.tenants.models import Tenant

ROWS_PER_FILE = 5000


class ArchiveMismatch(RuntimeError):
    """A file read back does not hold what was written: its rows are kept."""


def message_record(message: MessageLog) -> dict:
    return {
        "guid": message.guid, "tenant": message.tenant_id, "correlation_id": message.correlation_id,
        "application_message_id": message.application_message_id, "iflow_name": message.iflow_name,
        "status": message.status, "custom_status": message.custom_status, "sender": message.sender,
        "receiver": message.receiver, "log_start": message.log_start.isoformat(),
        "log_end": message.log_end.isoformat(), "error_text": message.error_text,
        "custom_headers": [{"name": h.name, "value": h.value} for h in message.custom_headers.all()],
        "attachments": [{"id": a.attachment_id, "name": a.name, "content_type": a.content_type, "size": a.size}
                        for a in message.attachments.all()],
    }


def write_file(path: Path, records: list[dict]) -> str:
    """Write, fsync and rename into place; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True).encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_file(path: Path) -> list[dict]:
    with gzip.open(path, "rb") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class Archived:
    name: str
    rows: int


def archive_chunk(tenant: Tenant, cutoff: datetime, folder: Path) -> Archived | None:
    """Archive the oldest ROWS_PER_FILE logs of ``tenant`` ending before ``cutoff``; None when none are left."""
    messages = list(MessageLog.objects.filter(tenant=tenant, log_end__lt=cutoff).order_by("log_end", "id")
                    .prefetch_related("custom_headers", "attachments")[:ROWS_PER_FILE])
    if not messages:
        return None
    records = [message_record(m) for m in messages]
    name = f"messagelogs-{tenant.id}-{messages[0].id}-{messages[-1].id}.jsonl.gz"
    path = folder / name
    digest = write_file(path, records)
    if read_file(path) != json.loads(json.dumps(records, sort_keys=True)):
        raise ArchiveMismatch(f"{path} does not read back as written; its rows are kept")
    with transaction.atomic():
        ArchiveFile.objects.update_or_create(name=name, defaults=dict(
            tenant_id=tenant.id, tenant_name=tenant.name, rows=len(records), first_log_end=messages[0].log_end,
            last_log_end=messages[-1].log_end, size=path.stat().st_size, sha256=digest))
        MessageLog.objects.filter(id__in=[m.id for m in messages]).delete()
    return Archived(name, len(records))


def archive_before(cutoff: datetime, folder: Path | None = None, max_files: int = 100) -> list[Archived]:
    """Archive every tenant's logs older than ``cutoff`` (at most ``max_files`` files per run)."""
    folder = Path(folder or settings.ARCHIVE_DIR)
    done: list[Archived] = []
    for tenant in Tenant.objects.all():
        while len(done) < max_files:
            archived = archive_chunk(tenant, cutoff, folder)
            if archived is None:
                break
            done.append(archived)
    return done
