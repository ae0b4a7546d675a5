from django.contrib import admin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is written by the services, never edited."""

    list_display = ["at", "actor_name", "action", "subject_type", "subject_name", "fields"]
    list_filter = ["action", "subject_type"]
    search_fields = ["subject_name", "actor_name"]

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
