"""The Audit log page (mounted under /settings/)."""

from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("audit/", views.AuditLogView.as_view(), name="log"),
]
