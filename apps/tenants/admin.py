from django.contrib import admin

from apps.tenants.forms import TenantForm
from apps.tenants.models import BackfillWindow, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("name", "api_url", "auth", "enabled", "poll_interval", "watermark", "last_read_at", "last_error")
    list_filter = ("enabled", "auth")
    readonly_fields = ("watermark", "last_poll_at", "last_read_at", "last_error", "created_at")
    fields = ("name", "api_url", "auth", "token_url", "client_id", "secret", "poll_interval", "backfill_days",
              "enabled", *readonly_fields)


@admin.register(BackfillWindow)
class BackfillWindowAdmin(admin.ModelAdmin):
    list_display = ("tenant", "start", "end", "done_at", "pages", "entries", "last_error")
    list_filter = ("tenant", ("done_at", admin.EmptyFieldListFilter))
    readonly_fields = [f.name for f in BackfillWindow._meta.fields]
