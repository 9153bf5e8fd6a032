from django.contrib import admin
from django.db import models

from apps.alerts.models import Alert, AlertRule, DailyReport


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "statuses", "iflow_pattern", "header_name", "min_count", "window_minutes",
                    "cooldown_minutes", "enabled", "last_fired_at")
    list_filter = ("enabled", "tenant")
    readonly_fields = ("last_fired_at",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("fired_at", "rule", "tenant", "message_count", "emailed_at", "webhook_at")
    list_filter = ("rule", "tenant")
    readonly_fields = [f.name for f in Alert._meta.fields]


@admin.register(DailyReport)
class DailyReportAdmin(admin.ModelAdmin):
    list_display = ("day", "tenant", "emailed_at", "webhook_at")
    readonly_fields = [f.name for f in DailyReport._meta.fields]
