from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Who did what to which connection, endpoint or token, and when: names of fields, never values."""

    name = "audit"
    verbose_name = "Audit log"
