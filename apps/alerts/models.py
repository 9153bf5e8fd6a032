"""Alert rules on message logs, the alerts they fired, and daily reports."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.delivery import webhook_url_error
from apps.messagelogs.models import STATUSES, MessageLog
from apps.metrics.models import split_emails
from apps.tenants.models import Tenant


class AlertRule(models.Model):
    """Fires when at least ``min_count`` matching messages ended within ``window_minutes``.

    A message matches when its status is in ``statuses``, its iFlow name
    matches ``iflow_pattern`` (shell-style: ``*`` and ``?``) and, when
    ``header_name`` is set, it carries that custom header with a value
    matching ``header_value``.  After firing, the rule rests ``cooldown_minutes``;
    each message is counted by one alert of a rule at most.
    """

    name = models.CharField(max_length=100, unique=True)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               help_text="Empty: every tenant")
    statuses = models.CharField(max_length=200, default="FAILED,ESCALATED",
                                help_text="Comma-separated, e.g. FAILED,ESCALATED,RETRY")
    iflow_pattern = models.CharField("iFlow name pattern", max_length=200, default="*")
    header_name = models.CharField("custom header name", max_length=200, blank=True)
    header_value = models.CharField("custom header value pattern", max_length=200, blank=True, default="*")
    min_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    window_minutes = models.PositiveIntegerField(default=15, validators=[MinValueValidator(1),
                                                                         MaxValueValidator(7 * 24 * 60)])
    cooldown_minutes = models.PositiveIntegerField(default=60, validators=[MaxValueValidator(7 * 24 * 60)])
    emails = models.TextField(blank=True, help_text="Empty: the addresses of the metrics settings")
    webhook_url = models.URLField(blank=True, help_text="Empty: the webhook of the metrics settings")
    enabled = models.BooleanField(default=True)
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        unknown = sorted(self.status_set - set(STATUSES))
        if not self.status_set:
            errors["statuses"] = "Name at least one status, e.g. FAILED."
        elif unknown:
            errors["statuses"] = f"Unknown status {', '.join(unknown)}; the statuses are {', '.join(STATUSES)}."
        if bad_url := webhook_url_error(self.webhook_url):
            errors["webhook_url"] = bad_url
        if errors:
            raise ValidationError(errors)
        if self.header_name and not self.header_value:
            self.header_value = "*"

    @property
    def status_set(self) -> set[str]:
        return {s.strip().upper() for s in self.statuses.split(",") if s.strip()}

    @property
    def email_list(self) -> list[str]:
        return split_emails(self.emails or "")


class Alert(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    fired_at = models.DateTimeField()
    message_count = models.PositiveIntegerField()
    # guid, iFlow, status, LogEnd and error text of the messages, kept with the alert
    # so that the notification (and its retries) say the same thing after archiving.
    messages = models.JSONField(default=list)
    emailed_at = models.DateTimeField(null=True, blank=True)
    webhook_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at"]

    def as_dict(self) -> dict:
        return {"id": self.id, "rule": self.rule.name, "tenant": self.tenant.name,
                "fired_at": self.fired_at.isoformat(), "message_count": self.message_count,
                "messages": self.messages}


class AlertedMessage(models.Model):
    """A message counted by an alert of a rule: never counted again by that rule."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(MessageLog, on_delete=models.CASCADE, related_name="alert_links")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "message"], name="alerted_once_per_rule")]


class DailyReport(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    body = models.JSONField(default=dict)
    emailed_at = models.DateTimeField(null=True, blank=True)
    webhook_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="daily_report_once")]
