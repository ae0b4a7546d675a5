from django.apps import AppConfig


class UsageConfig(AppConfig):
    """What every gateway call cost and how it went: counts, tokens, latency; never content or keys."""

    name = "usage"
    verbose_name = "Usage"
