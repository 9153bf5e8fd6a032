"""Message alerts and daily reports (queue ``trigger_alerts``).

* ``evaluate_alerts(tenant_id)``: fires every rule of the tenant whose
  threshold is reached and whose cooldown is over; sent by the alert lane of
  ``messagelog_get_details_alert`` once details are stored, and by beat;
* ``deliver_alert(alert_id)`` / ``deliver_report(report_id)``: e-mail and
  webhook, each channel delivered once (stamped), failures retried;
* ``daily_reports()``: from beat; one report per tenant and day, from
  ALERTS_DAILY_REPORT_HOUR (UTC) on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Count
from django.utils import timezone

from apps.alerts import notify
from apps.alerts.matching import matching_messages, rules_for
from apps.alerts.models import Alert, AlertedMessage, AlertRule, DailyReport
from apps.core.delivery import DELIVERY_ERRORS, deliver, post_json, send_email
from apps.core.dispatch import send_on_commit
from apps.messagelogs.models import MessageLog
from apps.metrics.models import cMetricSettings
from apps.tenants.models import Tenant
from workers.routing import routed_task

logger = logging.getLogger("flowwatch.alerts")

DB_RETRIES = dict(autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, retry_backoff_max=60,
                  retry_jitter=True, max_retries=8)
DELIVERY_RETRIES = dict(autoretry_for=(*DELIVERY_ERRORS, OperationalError), retry_backoff=True,
                        retry_backoff_max=600, retry_jitter=True, max_retries=8)
MAX_MESSAGES_PER_ALERT = 100
TOP_FAILING = 5


def fire(rule: AlertRule, tenant_id: int, now) -> int | None:
    """Fire ``rule`` for the tenant when due; the new alert's id, else None."""
    if rule.last_fired_at and now - rule.last_fired_at < timedelta(minutes=rule.cooldown_minutes):
        return None
    with transaction.atomic():
        messages = list(matching_messages(rule, tenant_id, now)[:MAX_MESSAGES_PER_ALERT])
        if len(messages) < rule.min_count:
            return None
        # Claim the firing: of two evaluations at once, only one moves last_fired_at.
        if not AlertRule.objects.filter(id=rule.id, last_fired_at=rule.last_fired_at).update(last_fired_at=now):
            return None
        alert = Alert.objects.create(rule=rule, tenant_id=tenant_id, fired_at=now, message_count=len(messages),
                                     messages=[notify.message_summary(m) for m in messages])
        AlertedMessage.objects.bulk_create([AlertedMessage(alert=alert, rule=rule, message=m) for m in messages])
        send_on_commit(deliver_alert, alert.id)
    logger.info("alert %s fired for tenant %s with %d message(s)", rule.name, tenant_id, len(messages))
    return alert.id


@routed_task("trigger_alerts", name="apps.alerts.tasks.evaluate_alerts", **DB_RETRIES)
def evaluate_alerts(tenant_id: int | None = None) -> dict:
    """Evaluate the rules of one tenant (every enabled tenant when None)."""
    tenants = [tenant_id] if tenant_id is not None else list(
        Tenant.objects.filter(enabled=True).values_list("id", flat=True))
    now = timezone.now()
    fired = [a for t in tenants for rule in rules_for(t) if (a := fire(rule, t, now)) is not None]
    return {"fired": fired}


@routed_task("trigger_alerts", name="apps.alerts.tasks.deliver_alert", **DELIVERY_RETRIES)
def deliver_alert(alert_id: int) -> dict:
    alert = Alert.objects.select_related("rule", "tenant").filter(id=alert_id).first()
    if alert is None:
        return {"skipped": "alert gone"}
    emails, webhook = notify.recipients(alert)
    return _deliver_stamped(Alert, alert, emails, webhook, notify.alert_subject(alert), notify.alert_body(alert),
                            {"source": "flowwatch", "alert": alert.as_dict()})


def _deliver_stamped(model, row, emails: list[str], webhook: str, subject: str, body: str, payload: dict) -> dict:
    """Each channel not yet stamped on ``row`` is tried; the first failure is raised after both."""
    errors: list[Exception] = []

    def email() -> int:
        if not emails or row.emailed_at is not None:
            return 0
        send_email(emails, subject, body)
        model.objects.filter(id=row.id).update(emailed_at=timezone.now())
        return 1

    def post() -> int:
        if not webhook or row.webhook_at is not None:
            return 0
        key = f"flowwatch-{model._meta.model_name}-{row.id}"  # the same on every redelivery
        post_json(webhook, {**payload, "idempotency_key": key}, idempotency_key=key)
        model.objects.filter(id=row.id).update(webhook_at=timezone.now())
        return 1

    sent = {"emailed": deliver("e-mail", errors, email), "posted": deliver("webhook", errors, post)}
    if errors:
        raise errors[0]  # autoretry_for retries; the stamped channel is not repeated
    return sent


def report_body(tenant_id: int, start, end) -> dict:
    messages = MessageLog.objects.filter(tenant_id=tenant_id, log_end__gte=start, log_end__lt=end)
    statuses = dict(messages.values_list("status").annotate(n=Count("id")).order_by("status"))
    failing = (messages.filter(status__in=("FAILED", "ESCALATED")).values("iflow_name")
               .annotate(n=Count("id")).order_by("-n", "iflow_name")[:TOP_FAILING])
    return {"from": start.isoformat(), "to": end.isoformat(), "statuses": statuses,
            "top_failing": [{"iflow": row["iflow_name"], "count": row["n"]} for row in failing]}


@routed_task("trigger_alerts", name="apps.alerts.tasks.daily_reports", **DB_RETRIES)
def daily_reports() -> dict:
    """Create today's report of every enabled tenant once the configured hour is reached."""
    now = timezone.now()
    if now.hour < settings.ALERTS_DAILY_REPORT_HOUR:
        return {"created": []}
    created = []
    for tenant in Tenant.objects.filter(enabled=True):
        with transaction.atomic():
            report, new = DailyReport.objects.get_or_create(
                tenant=tenant, day=now.date(), defaults={"body": report_body(tenant.id, now - timedelta(days=1), now)})
            if new:
                send_on_commit(deliver_report, report.id)
                created.append(report.id)
    return {"created": created}


@routed_task("trigger_alerts", name="apps.alerts.tasks.deliver_report", **DELIVERY_RETRIES)
def deliver_report(report_id: int) -> dict:
    report = DailyReport.objects.select_related("tenant").filter(id=report_id).first()
    if report is None:
        return {"skipped": "report gone"}
    config = cMetricSettings.load()
    payload = {"source": "flowwatch", "daily_report": {"tenant": report.tenant.name, "day": str(report.day),
                                                        **report.body}}
    return _deliver_stamped(DailyReport, report, config.emails, config.alert_webhook_url,
                            notify.report_subject(report), notify.report_body(report), payload)
