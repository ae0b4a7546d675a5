"""The Audit log page of the settings page, and what every page listing entries needs."""

from collections.abc import Iterable

from django.apps import apps
from django.conf import settings
from django.views.generic import ListView

from core.ui import PAGE_SIZE, SettingsPageMixin

from .models import AuditEntry


def with_current_subjects(entries: Iterable[AuditEntry]) -> list[AuditEntry]:
    """Each entry with `current`: the row it names as that row is now (renamed, or None once deleted).

    One query per subject type on the page (settings.AUDIT_SUBJECTS names their models), however many rows.
    """
    entries = list(entries)
    for subject_type, label in settings.AUDIT_SUBJECTS.items():
        ids = {entry.subject_id for entry in entries if entry.subject_type == subject_type and entry.subject_id}
        current = apps.get_model(label).objects.only("id", "name").in_bulk(ids) if ids else {}
        for entry in entries:
            if entry.subject_type == subject_type:
                entry.current = current.get(entry.subject_id)
    return entries


class AuditEntryListView(SettingsPageMixin, ListView):
    """A page of audit entries, each with the row it names as it is now."""

    context_object_name = "entries"
    paginate_by = PAGE_SIZE

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["entries"] = with_current_subjects(context["entries"])
        return context


class AuditLogView(AuditEntryListView):
    """Every recorded action, newest first, including those on connections deleted since."""

    permission_required = "audit.view_auditentry"
    template_name = "audit/audit_log.html"
    queryset = AuditEntry.objects.order_by("-at", "-id")

    def get_queryset(self):
        return super().get_queryset().visible_to(self.request.user)
