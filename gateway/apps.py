from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The gateway: provider adapters, the upstream HTTP client and the error mapping."""

    name = "gateway"
