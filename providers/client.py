"""The provider client's two entry points: call a model, and ask whether the provider accepts credentials.

Everything below works on plain values (an Account and a Target); the gateway and the Test action are its
only callers, and neither hands it a database row.
"""

from .account import Account
from .adapters import adapter_for
from .adapters.base import CredentialsCheck, EventStream, Target
from .errors import GatewayError


def call(account: Account, target: Target, body: object) -> dict | EventStream:
    """The provider's answer in OpenAI's shape, or an event stream; a GatewayError for anything else."""
    return adapter_for(account.provider.id).invoke(account, target, body)


def check_credentials(account: Account) -> CredentialsCheck:
    """Whether the provider accepts the account's credentials; never raises, never echoes a secret."""
    try:
        adapter = adapter_for(account.provider.id)
    except GatewayError as error:
        return CredentialsCheck(False, None, error.message)
    return adapter.test_credentials(account)
