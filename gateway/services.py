"""The Test action: one call of the provider's cheapest authenticated route, through the traffic code."""

from connections.models import Connection

from .adapters import adapter_for
from .adapters.base import CredentialsCheck
from .errors import GatewayError


def connection_test(*, connection: Connection) -> CredentialsCheck:
    """Whether the provider accepts the connection's stored credentials; never raises, never echoes a secret."""
    try:
        adapter = adapter_for(connection.provider)
    except GatewayError as error:
        return CredentialsCheck(False, None, error.message)
    return adapter.test_credentials(connection)
