"""Message processing logs, one row per (tenant, MessageGuid), and what enriches them."""

from __future__ import annotations

import json

from django.db import models

from apps.tenants.models import Tenant
from apps.tenants.odata import json_dumps, json_loads

STATUSES = ("COMPLETED", "PROCESSING", "RETRY", "ESCALATED", "FAILED", "CANCELLED", "DISCARDED", "ABANDONED")
# Messages whose error text and attachments are fetched.
PROBLEM_STATUSES = frozenset({"FAILED", "ESCALATED", "RETRY"})
HOT, COLD = "hot", "cold"


class FastEncoder(json.JSONEncoder):
    """JSONField's encoder hook, through orjson: staging a page was a tenth of the cold worker's time."""

    def encode(self, o) -> str:
        return json_dumps(o)


class FastDecoder(json.JSONDecoder):
    """JSONField's decoder hook, through orjson: the same values as the standard library."""

    def decode(self, s, _w=None):
        return json_loads(s)


class LogPage(models.Model):
    """A page of raw log entries, staged before it is processed.

    The reader commits the page here, then moves the watermark and queues
    ``messagelog_process_batch`` with the page id; processing deletes the row
    in the same transaction as the upsert, so a redelivered task finds
    nothing left to do.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    lane = models.CharField(max_length=4, choices=[(HOT, HOT), (COLD, COLD)])
    entries = models.JSONField(encoder=FastEncoder, decoder=FastDecoder)
    created_at = models.DateTimeField(auto_now_add=True)
    error = models.TextField(blank=True)  # set when the page cannot be stored; it stays for inspection


class Correlation(models.Model):
    """Messages of one tenant that share a CorrelationId: one chain."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    correlation_id = models.CharField(max_length=200)
    message_count = models.PositiveIntegerField(default=0)
    first_log_start = models.DateTimeField(null=True)
    last_log_end = models.DateTimeField(null=True)
    statuses = models.CharField(max_length=200, blank=True)  # distinct statuses in the chain, comma-separated

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "correlation_id"], name="correlation_once")]


class MessageLog(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    guid = models.CharField(max_length=64)
    correlation_id = models.CharField(max_length=200, blank=True)
    application_message_id = models.CharField(max_length=200, blank=True)
    iflow_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20)
    custom_status = models.CharField(max_length=100, blank=True)
    sender = models.CharField(max_length=200, blank=True)
    receiver = models.CharField(max_length=200, blank=True)
    log_start = models.DateTimeField()
    log_end = models.DateTimeField()
    error_text = models.TextField(blank=True)
    details_at = models.DateTimeField(null=True, blank=True)  # error text and attachments fetched
    headers_at = models.DateTimeField(null=True, blank=True)  # custom header properties fetched
    chain = models.ForeignKey(Correlation, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "guid"], name="messagelog_once")]
        indexes = [
            models.Index(fields=["tenant", "log_end"]),
            models.Index(fields=["status", "log_end"]),
            models.Index(fields=["tenant", "correlation_id"]),
            models.Index(fields=["log_end"]),
        ]

    def __str__(self) -> str:
        return f"{self.guid} {self.status}"


class MessageAttachment(models.Model):
    message = models.ForeignKey(MessageLog, on_delete=models.CASCADE, related_name="attachments")
    attachment_id = models.CharField(max_length=200)
    name = models.CharField(max_length=300, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    size = models.BigIntegerField(null=True)
    timestamp = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "attachment_id"], name="attachment_once")]


class CustomHeader(models.Model):
    message = models.ForeignKey(MessageLog, on_delete=models.CASCADE, related_name="custom_headers")
    header_id = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200)
    value = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["name", "message"])]
