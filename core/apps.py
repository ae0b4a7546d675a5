from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Plumbing the apps share: API base classes, names, redaction, outage answers, health, the settings layout."""

    name = "core"
    verbose_name = "Core"
