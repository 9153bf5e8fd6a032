"""Archiving message logs past the retention: no row lost, every file read back."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.archives import archiving
from apps.archives.archiving import archive_before, read_file
from apps.archives.models import ArchiveFile
from apps.archives.tasks import archive_messagelogs
from apps.messagelogs.models import CustomHeader, MessageLog
from tests.pipeline_support import OFFLINE, tenant_row


@pytest.fixture
def logs(db):
    tenant = tenant_row(OFFLINE)
    now = timezone.now()
    for i in range(120):
        age = timedelta(days=40) - timedelta(hours=i) if i < 90 else timedelta(days=1)
        status = "FAILED" if i % 7 == 0 else "COMPLETED"
        message = MessageLog.objects.create(tenant=tenant, guid=f"m-{i:03d}", status=status,
                                            log_start=now - age, log_end=now - age, error_text=f"error {i}")
        CustomHeader.objects.create(message=message, name="OrderId", value=str(i))
    return tenant


def test_archiving_loses_no_row(logs, tmp_path, monkeypatch):
    monkeypatch.setattr(archiving, "ROWS_PER_FILE", 40)
    before = set(MessageLog.objects.values_list("guid", flat=True))
    done = archive_before(timezone.now() - timedelta(days=30), folder=tmp_path)
    archived = [record for f in ArchiveFile.objects.all() for record in read_file(tmp_path / f.name)]
    remaining = set(MessageLog.objects.values_list("guid", flat=True))
    assert len(archived) == 90 and len(done) == 3 and len(remaining) == 30
    assert {r["guid"] for r in archived} | remaining == before
    assert not {r["guid"] for r in archived} & remaining
    assert sum(f.rows for f in ArchiveFile.objects.all()) == 90
    m7 = next(r for r in archived if r["guid"] == "m-007")
    assert m7["status"] == "FAILED" and m7["error_text"] == "error 7" and m7["custom_headers"] == [
        {"name": "OrderId", "value": "7"}]


def test_a_file_that_does_not_read_back_keeps_its_rows(logs, tmp_path, monkeypatch):
    monkeypatch.setattr(archiving, "read_file", lambda path: [])
    with pytest.raises(archiving.ArchiveMismatch):
        archive_before(timezone.now() - timedelta(days=30), folder=tmp_path)
    assert MessageLog.objects.count() == 120 and ArchiveFile.objects.count() == 0


def test_the_task_archives_past_the_retention_into_var_dir(logs, settings, tmp_path):
    settings.ARCHIVE_DIR = tmp_path / "archives"
    settings.MESSAGELOG_RETENTION_DAYS = 30
    result = archive_messagelogs.run()
    assert result["rows"] == 90
    [index] = ArchiveFile.objects.all()
    path = Path(settings.ARCHIVE_DIR) / index.name
    with gzip.open(path, "rt") as handle:
        lines = [json.loads(line) for line in handle]
    assert len(lines) == index.rows == 90
    assert index.first_log_end <= index.last_log_end
