from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    """The provider catalogue and the client that calls providers (no models of its own)."""

    name = "providers"
    verbose_name = "Providers"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system check
