"""Admin for superadmins only: thresholds (a singleton), overrides, events."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from apps.metrics.auth import is_superadmin
from apps.metrics.forms import MetricSettingsForm, QueueThresholdForm
from apps.metrics.models import (HISTORY_AND_ALERT_FIELDS, THRESHOLD_GROUPS, MetricEvent, QueueThreshold,
                                 cMetricSettings)


class SuperadminOnly:
    """Staff who are not superusers see none of these models."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superadmin(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_superadmin(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_superadmin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_superadmin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_superadmin(request.user)


@admin.register(cMetricSettings)
class MetricSettingsAdmin(SuperadminOnly, admin.ModelAdmin):
    form = MetricSettingsForm
    fieldsets = (
        *((heading, {"fields": names}) for heading, names in THRESHOLD_GROUPS),
        ("History and alerts", {"fields": HISTORY_AND_ALERT_FIELDS}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the data migration created the one row

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """The list of one: go straight to its form."""
        if not is_superadmin(request.user):
            raise PermissionDenied
        obj = cMetricSettings.load()
        return HttpResponseRedirect(reverse("admin:metrics_cmetricsettings_change", args=[obj.pk]))


@admin.register(QueueThreshold)
class QueueThresholdAdmin(SuperadminOnly, admin.ModelAdmin):
    form = QueueThresholdForm
    list_display = ("queue", "warn", "critical")


@admin.register(MetricEvent)
class MetricEventAdmin(SuperadminOnly, admin.ModelAdmin):
    list_display = ("at", "kind", "subject", "old_status", "new_status", "message")
    list_filter = ("kind", "new_status")
    search_fields = ("subject", "message")
    readonly_fields = [f.name for f in MetricEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
