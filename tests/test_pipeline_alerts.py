"""A FAILED message read over real HTTP gets its error text and fires a matching rule exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.models import Alert, AlertRule
from apps.alerts.tasks import deliver_alert, evaluate_alerts
from apps.messagelogs.models import CustomHeader, MessageLog
from apps.tenants.models import Tenant
from tests.pipeline_support import (  # noqa: F401  fixtures
    OFFLINE, fake_tenant, pipeline_worker, poll_now, tenant_row, webhook,
)
from tests.test_metrics_support import wait_for

ERROR = "com.sap.it.rt.adapter.http.api.exception.HttpResponseException: HTTP 500 from CRM"


def following(fake) -> Tenant:
    """A tenant already onboarded: only the last minutes are read."""
    tenant = tenant_row(fake, backfill_days=0)
    Tenant.objects.filter(id=tenant.id).update(watermark=timezone.now() - timedelta(minutes=5))
    return tenant


@pytest.mark.django_db(transaction=True)
def test_a_failed_message_gets_its_error_text_and_fires_its_rule_exactly_once(clean_redis, fake_tenant,
                                                                              pipeline_worker, webhook):
    rule = AlertRule.objects.create(name="orders failing", statuses="FAILED", iflow_pattern="Order*",
                                    header_name="Region", header_value="E*", min_count=1, cooldown_minutes=60,
                                    emails="ops@example.com", webhook_url=webhook.url)
    tenant = following(fake_tenant)
    now = timezone.now()
    fake_tenant.add("f-1", "FAILED", now - timedelta(seconds=20), error=ERROR, headers={"Region": "EMEA"})
    fake_tenant.add("c-1", "COMPLETED", now - timedelta(seconds=10))
    fake_tenant.add("f-other", "FAILED", now - timedelta(seconds=5), iflow="Invoices", error="other")
    poll_now(tenant.id)
    wait_for(lambda: webhook.received, timeout=60, interval=0.3)
    [alert] = Alert.objects.all()
    assert alert.rule == rule and alert.message_count == 1
    assert alert.messages[0]["guid"] == "f-1" and alert.messages[0]["error"] == ERROR
    assert webhook.received[0]["alert"]["messages"][0]["error"] == ERROR
    assert MessageLog.objects.get(guid="f-1").error_text == ERROR
    assert CustomHeader.objects.get(message__guid="f-1").value == "EMEA"
    wait_for(lambda: Alert.objects.get(id=alert.id).emailed_at, timeout=30, interval=0.3)
    assert "messagelog_get_details_alert" in pipeline_worker.log.read_text()

    poll_now(tenant.id)  # the overlap window reads f-1 again
    wait_for(lambda: MessageLog.objects.get(guid="f-other").details_at, timeout=60, interval=0.3)
    assert evaluate_alerts.run(tenant.id) == {"fired": []}
    assert deliver_alert.run(alert.id) == {"emailed": 0, "posted": 0}
    assert Alert.objects.count() == 1 and len(webhook.received) == 1


@pytest.mark.django_db
def test_a_rule_in_its_cooldown_does_not_fire_again():
    from apps.alerts.tasks import fire

    tenant = tenant_row(OFFLINE)
    rule = AlertRule.objects.create(name="any failure", statuses="FAILED", window_minutes=60,
                                    cooldown_minutes=30)
    now = timezone.now()
    for guid in ("a", "b"):
        MessageLog.objects.create(tenant=tenant, guid=guid, status="FAILED", log_start=now, log_end=now,
                                  details_at=now)
    assert fire(rule, tenant.id, now) is not None
    MessageLog.objects.create(tenant=tenant, guid="c", status="FAILED", log_start=now, log_end=now, details_at=now)
    rule.refresh_from_db()
    assert fire(rule, tenant.id, now + timedelta(minutes=10)) is None
    assert fire(rule, tenant.id, now + timedelta(minutes=31)) is not None
    assert [a.message_count for a in Alert.objects.order_by("fired_at")] == [2, 1]


@pytest.mark.django_db
def test_the_daily_report_counts_statuses_and_top_failing_iflows_and_is_sent_once(settings, webhook):
    from apps.alerts.models import DailyReport
    from apps.alerts.tasks import daily_reports, deliver_report
    from apps.metrics.models import cMetricSettings

    settings.ALERTS_DAILY_REPORT_HOUR = 0
    config = cMetricSettings.load()
    config.alert_webhook_url = webhook.url
    config.save()
    tenant = tenant_row(OFFLINE)
    now = timezone.now()
    rows = [("Orders", "FAILED")] * 3 + [("Invoices", "FAILED"), ("Orders", "COMPLETED"), ("Stock", "ESCALATED")]
    for i, (iflow, status) in enumerate(rows):
        MessageLog.objects.create(tenant=tenant, guid=f"d-{i}", iflow_name=iflow, status=status,
                                  log_start=now - timedelta(hours=2), log_end=now - timedelta(hours=2))
    [report_id] = daily_reports.run()["created"]
    assert daily_reports.run() == {"created": []}
    body = DailyReport.objects.get(id=report_id).body
    assert body["statuses"] == {"COMPLETED": 1, "ESCALATED": 1, "FAILED": 4}
    assert body["top_failing"][0] == {"iflow": "Orders", "count": 3}
    assert deliver_report.run(report_id) == {"emailed": 0, "posted": 1}
    assert deliver_report.run(report_id) == {"emailed": 0, "posted": 0}
    assert webhook.received[0]["daily_report"]["tenant"] == tenant.name


@pytest.mark.django_db
def test_a_message_the_tenant_no_longer_has_is_not_waited_for(clean_redis, fake_tenant):
    from apps.messagelogs.tasks import fetch_details, messagelog_customheaders

    tenant = tenant_row(fake_tenant)
    now = timezone.now()
    ghost = MessageLog.objects.create(tenant=tenant, guid="ghost", status="FAILED", log_start=now, log_end=now)
    assert fetch_details(tenant.id, [ghost.id], "hot") == []
    assert messagelog_customheaders.run(tenant.id, [ghost.id]) == {"stored": 0}
    ghost.refresh_from_db()
    assert ghost.details_at is not None and ghost.headers_at is not None and ghost.error_text == ""


@pytest.mark.django_db
def test_a_rule_with_an_unknown_status_is_refused_naming_it(client, superadmin):
    client.force_login(superadmin)
    response = client.post("/admin/alerts/alertrule/add/", {
        "name": "typo", "statuses": "FAILED,FAILD", "iflow_pattern": "*", "header_value": "*", "min_count": 1,
        "window_minutes": 15, "cooldown_minutes": 60, "enabled": "on"})
    assert response.status_code == 200
    assert "Unknown status FAILD" in response.content.decode()
    assert not AlertRule.objects.exists()
