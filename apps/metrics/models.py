"""Thresholds (cMetricSettings, QueueThreshold), events and per-minute history."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.utils import timezone

from apps.core.delivery import webhook_url_error
from workers.queues import QUEUE_NAMES

OK, WARN, CRITICAL = "ok", "warn", "critical"
PERCENT = [MinValueValidator(0), MaxValueValidator(100)]

# The defaults of docs/metrics.md; the data migration 0002 writes exactly these.
DEFAULTS: dict[str, int] = {
    "queue_warn": 1000,
    "queue_critical": 10000,
    "memory_warn_percent": 90,
    "memory_critical_percent": 98,
    "evicted_keys_warn_min": 1,
    "evicted_keys_critical_min": 10,
    "rejected_connections_critical_min": 1,
    "history_retention_days": 30,
}

# The threshold fields of cMetricSettings as the admin groups them: (heading,
# fields).  The settings form and the admin are built from this table, so a
# new threshold is its model field and default here, its use in evaluate.py,
# a migration, and its line in docs/metrics.md.
THRESHOLD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Queues", ("queue_warn", "queue_critical")),
    ("Redis memory", ("memory_warn_percent", "memory_critical_percent")),
    ("Redis counters (increase since the previous sample)",
     ("evicted_keys_warn_min", "evicted_keys_critical_min", "rejected_connections_critical_min")),
)
THRESHOLD_FIELDS: tuple[str, ...] = tuple(name for _heading, names in THRESHOLD_GROUPS for name in names)
# The other settings on the same form: retention and where alerts go.
HISTORY_AND_ALERT_FIELDS = ("history_retention_days", "alert_emails", "alert_webhook_url")

# (warn field, critical field, label): warn must stay below critical.
ORDERED_PAIRS = (
    ("queue_warn", "queue_critical", "queue"),
    ("memory_warn_percent", "memory_critical_percent", "memory percent"),
    ("evicted_keys_warn_min", "evicted_keys_critical_min", "evicted keys"),
)


def split_emails(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").replace(";", ",").split(",") if part.strip()]


class cMetricSettings(models.Model):  # noqa: N801  the name operators know it by
    """The application thresholds: a singleton (pk 1), edited by superadmins."""

    queue_warn = models.PositiveIntegerField(default=DEFAULTS["queue_warn"],
                                             help_text="Messages waiting in one queue that make it warn.")
    queue_critical = models.PositiveIntegerField(default=DEFAULTS["queue_critical"],
                                                 help_text="Messages waiting in one queue that make it critical.")
    memory_warn_percent = models.FloatField(default=DEFAULTS["memory_warn_percent"], validators=PERCENT,
                                            help_text="used_memory over maxmemory (or system memory), percent.")
    memory_critical_percent = models.FloatField(default=DEFAULTS["memory_critical_percent"], validators=PERCENT)
    evicted_keys_warn_min = models.PositiveIntegerField(default=DEFAULTS["evicted_keys_warn_min"],
                                                        help_text="Keys evicted since the previous sample.")
    evicted_keys_critical_min = models.PositiveIntegerField(default=DEFAULTS["evicted_keys_critical_min"])
    rejected_connections_critical_min = models.PositiveIntegerField(
        default=DEFAULTS["rejected_connections_critical_min"],
        help_text="Connections refused (maxclients) since the previous sample.")
    history_retention_days = models.PositiveIntegerField(
        default=DEFAULTS["history_retention_days"], validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Per-minute history and events older than this are pruned by archive_data.")
    alert_emails = models.TextField(blank=True, default="",
                                    help_text="Addresses for status-change alerts, separated by commas or lines.")
    alert_webhook_url = models.URLField(blank=True, default="",
                                        help_text="Optional: each alert is POSTed here as JSON.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "metric settings"
        verbose_name_plural = "metric settings"

    def __str__(self) -> str:
        return "Metric thresholds"

    @classmethod
    def load(cls) -> "cMetricSettings":
        obj, _created = cls.objects.get_or_create(pk=1)
        return obj

    def save(self, *args, **kwargs) -> None:
        self.pk = 1  # a singleton: every save writes the one row
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for warn, critical, label in ORDERED_PAIRS:
            low, high = getattr(self, warn), getattr(self, critical)
            if low is not None and high is not None and low >= high:
                errors[warn] = f"The {label} warn threshold ({low:g}) must be below the critical one ({high:g})."
        bad = [address for address in split_emails(self.alert_emails or "") if not _is_email(address)]
        if bad:
            errors["alert_emails"] = f"Not an e-mail address: {', '.join(bad)}."
        if bad_url := webhook_url_error(self.alert_webhook_url or ""):
            errors["alert_webhook_url"] = bad_url
        if errors:
            raise ValidationError(errors)

    @property
    def emails(self) -> list[str]:
        return split_emails(self.alert_emails or "")


def _is_email(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


class QueueThreshold(models.Model):
    """A per-queue override of the queue thresholds (e.g. a small ``ai`` queue)."""

    queue = models.CharField(max_length=100, unique=True)
    warn = models.PositiveIntegerField()
    critical = models.PositiveIntegerField()

    class Meta:
        ordering = ["queue"]

    def __str__(self) -> str:
        return f"{self.queue}: warn {self.warn}, critical {self.critical}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.queue and self.queue not in QUEUE_NAMES:
            errors["queue"] = f"Queue {self.queue!r} is not declared in workers/queues.py."
        if self.warn is not None and self.critical is not None and self.warn >= self.critical:
            errors["warn"] = f"The warn threshold ({self.warn}) must be below the critical one ({self.critical})."
        if errors:
            raise ValidationError(errors)


class MetricEvent(models.Model):
    """A status change, a Redis restart, an unreachable or recovered role, a
    message of a dead worker handed back (or parked instead)."""

    STATUS, RESTART, UNREACHABLE, RECOVERED = "status", "restart", "unreachable", "recovered"
    HANDED_BACK, NOT_HANDED_BACK = "handed_back", "not_handed_back"
    KINDS = [(k, k) for k in (STATUS, RESTART, UNREACHABLE, RECOVERED, HANDED_BACK, NOT_HANDED_BACK)]

    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=KINDS)
    subject = models.CharField(max_length=120)  # "queue:ai", "redis:broker"
    old_status = models.CharField(max_length=10, blank=True, default="")
    new_status = models.CharField(max_length=10, blank=True, default="")
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    # Set by trigger_alerts once delivered, so a retry never sends twice.
    emailed_at = models.DateTimeField(null=True, blank=True)
    webhook_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["subject", "-at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.subject}: {self.message}"

    def as_dict(self) -> dict:
        return {"id": self.id, "at": iso(self.at), "kind": self.kind, "subject": self.subject,
                "old_status": self.old_status, "new_status": self.new_status, "message": self.message,
                "details": self.details}


class QueueSample(models.Model):
    """One queue in one minute: the highest depth seen in it (for charts)."""

    minute = models.DateTimeField(db_index=True)
    queue = models.CharField(max_length=100)
    depth = models.BigIntegerField()
    oldest_age_seconds = models.FloatField(null=True)
    processed_per_minute = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "queue"], name="metrics_queuesample_minute_queue")]


class RedisSample(models.Model):
    """One Redis role in one minute: its last memory figure (for charts)."""

    minute = models.DateTimeField(db_index=True)
    role = models.CharField(max_length=20)
    reachable = models.BooleanField()
    memory_percent = models.FloatField(null=True)
    used_memory = models.BigIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "role"], name="metrics_redissample_minute_role")]


class RedisServerState(models.Model):
    """The last run_id seen per server, so a restart is noticed across controller restarts."""

    server = models.CharField(max_length=300, unique=True)  # "host:port"
    run_id = models.CharField(max_length=64)
    seen_at = models.DateTimeField(default=timezone.now)
    # When a controller last saw the run_id change (the snapshot's last_restart_at).
    restarted_at = models.DateTimeField(null=True, blank=True)


def iso(moment: datetime | float | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a Z, as the snapshot spells times."""
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, dt_timezone.utc)
    moment = moment.astimezone(dt_timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class MetricCounter(models.Model):
    """A count that only grows, for Prometheus' ``*_total`` families.

    Kept apart from the rows it counts, so that pruning events never makes a
    counter go down. ``labels`` is the label set as JSON with sorted keys
    (apps/metrics/counters.py writes and reads it).
    """

    name = models.CharField(max_length=60)
    labels = models.CharField(max_length=300, blank=True, default="")
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="metrics_metriccounter_name_labels")]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}} {self.value}"
