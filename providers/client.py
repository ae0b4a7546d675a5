"""The provider client's entry points: call a model, and ask whether the provider accepts credentials.

Everything below works on plain values (an Account and a Target) on asyncio; the gateway and the Test action
are its only callers, and neither hands it a database row. `check_credentials_sync` is for synchronous code
(a page's Test button).
"""

import json

from .account import Account
from .adapters import adapter_for
from .adapters.base import CredentialsCheck, EventStream, Target, redact_answer
from .errors import GatewayError
from .upstream import run_sync


async def call(account: Account, target: Target, body: object) -> bytes | EventStream:
    """The provider's answer in OpenAI's shape as JSON bytes, or an event stream; a GatewayError otherwise.

    Whatever the provider sent back, no form of the account's secrets reaches the caller: an answer that
    echoes one has it replaced by `[redacted]` (streams, chunk by chunk, in EventStream).
    """
    answer = await adapter_for(account.provider.id).invoke(account, target, body)
    if isinstance(answer, EventStream):
        return answer
    return redact_answer(account, json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode())


async def forward(account: Account, target: Target, api: str, body: dict, headers: dict[str, str]) -> bytes | EventStream:
    """A request in the provider's own API (`api`, e.g. "anthropic.messages") sent on unchanged but for the
    endpoint's model and the account's credentials; the answer as the provider's bytes (redacted) or its
    event stream. A 400 `wrong_provider` when the account's provider does not speak that API."""
    return await adapter_for(account.provider.id).forward(account, target, api, body, headers)


async def check_credentials(account: Account) -> CredentialsCheck:
    """Whether the provider accepts the account's credentials; never raises, never echoes a secret."""
    try:
        adapter = adapter_for(account.provider.id)
    except GatewayError as error:
        return CredentialsCheck(False, None, error.message)
    return await adapter.test_credentials(account)


def check_credentials_sync(account: Account) -> CredentialsCheck:
    """`check_credentials` for synchronous callers (on the server's loop when there is one)."""
    return run_sync(check_credentials, account)
