from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The gateway: OpenAI-compatible routes that call providers with the endpoints' connections."""

    name = "gateway"
