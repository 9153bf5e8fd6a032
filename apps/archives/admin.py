from django.contrib import admin

from apps.archives.models import ArchiveFile


@admin.register(ArchiveFile)
class ArchiveFileAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant_name", "rows", "first_log_end", "last_log_end", "size", "created_at")
    readonly_fields = [f.name for f in ArchiveFile._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
