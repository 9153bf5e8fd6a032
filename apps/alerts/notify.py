"""What an alert and a daily report say, by e-mail and by webhook."""

from __future__ import annotations

from apps.alerts.models import Alert, DailyReport
from apps.metrics.models import cMetricSettings

ERROR_EXCERPT = 500


def recipients(alert: Alert) -> tuple[list[str], str]:
    """The rule's addresses and webhook, or else those of the metrics settings."""
    config = cMetricSettings.load()
    return (alert.rule.email_list or config.emails), (alert.rule.webhook_url or config.alert_webhook_url)


def alert_subject(alert: Alert) -> str:
    return f"[Flowwatch alert] {alert.rule.name}: {alert.message_count} message(s) on {alert.tenant.name}"


def alert_body(alert: Alert) -> str:
    lines = [alert_subject(alert), ""]
    for m in alert.messages:
        lines.append(f"{m['log_end']}  {m['status']:<10} {m['iflow']}  {m['guid']}")
        if m.get("error"):
            lines.append(f"    {m['error']}")
    return "\n".join(lines)


def message_summary(message) -> dict:
    return {"guid": message.guid, "iflow": message.iflow_name, "status": message.status,
            "log_end": message.log_end.isoformat(), "correlation_id": message.correlation_id,
            "error": (message.error_text or "")[:ERROR_EXCERPT]}


def report_subject(report: DailyReport) -> str:
    return f"[Flowwatch daily report] {report.tenant.name} {report.day:%Y-%m-%d}"


def report_body(report: DailyReport) -> str:
    body = report.body
    lines = [report_subject(report), "", f"From {body['from']} to {body['to']} (UTC)", "", "Messages per status:"]
    lines += [f"  {status:<12} {count}" for status, count in body["statuses"].items()] or ["  none"]
    lines += ["", "Top failing iFlows:"]
    lines += [f"  {row['count']:>6}  {row['iflow']}" for row in body["top_failing"]] or ["  none"]
    return "\n".join(lines)
