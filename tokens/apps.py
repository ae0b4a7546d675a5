from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "API tokens"

    def ready(self) -> None:
        # Registers the OpenAPI description of Bearer authentication with drf-spectacular.
        from . import schema  # noqa: F401
