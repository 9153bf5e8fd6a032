from django.contrib import admin

from apps.messagelogs.models import Correlation, LogPage, MessageLog


class ReadOnly(admin.ModelAdmin):
    """Written by the pipeline only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageLog)
class MessageLogAdmin(ReadOnly):
    list_display = ("log_end", "tenant", "iflow_name", "status", "guid", "details_at")
    list_filter = ("status", "tenant")
    search_fields = ("guid", "correlation_id", "iflow_name", "application_message_id")
    date_hierarchy = "log_end"


@admin.register(Correlation)
class CorrelationAdmin(ReadOnly):
    list_display = ("correlation_id", "tenant", "message_count", "statuses", "last_log_end")
    search_fields = ("correlation_id",)


@admin.register(LogPage)
class LogPageAdmin(ReadOnly):
    list_display = ("id", "tenant", "lane", "created_at", "error")
    exclude = ("entries",)
