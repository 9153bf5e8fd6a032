"""The archive index: what each archive file holds."""

from __future__ import annotations

from django.db import models


class ArchiveFile(models.Model):
    """One gzip JSONL file under ARCHIVE_DIR; one line per archived message log."""

    name = models.CharField(max_length=200, unique=True)  # relative to ARCHIVE_DIR
    tenant_id = models.BigIntegerField()  # kept as a number: the tenant may be deleted later
    tenant_name = models.CharField(max_length=100)
    rows = models.PositiveIntegerField()
    first_log_end = models.DateTimeField()
    last_log_end = models.DateTimeField()
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
