"""What the provider client calls with: a provider account as plain values, never a database row."""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from .catalogue import AuthMethod, Provider


@dataclass(frozen=True)
class Account:
    """A provider, one of its auth methods, the secrets and the config to call it with.

    The connection model builds one per call from its current row (`Connection.account()`), so a rotated
    key is what the next call uses. `id` and `secrets_version` say whose credentials these are and which
    version of them: access tokens obtained with them are cached under both, so a rotation (a new version)
    is never served a token of the old secret.
    """

    name: str  # shown in log lines and messages: the connection's name
    provider: Provider
    method: AuthMethod
    secrets: Mapping[str, str] = field(repr=False)
    config: Mapping[str, str] = field(default_factory=dict)
    id: Hashable = None
    secrets_version: Hashable = None

    def __repr__(self) -> str:
        return f"<Account {self.name!r} {self.provider.id}/{self.method.id}>"

    @property
    def label(self) -> str:
        """The provider's name as users know it ("Amazon Bedrock")."""
        return self.provider.label

    def config_value(self, name: str) -> str:
        """A config field's value, or the catalogue's default when it was left empty."""
        spec = self.method.config_field(name)
        return self.config.get(name) or (spec.default if spec else "")

    def base_url(self) -> str:
        """Where the provider's API lives for this account (its base_url, else the catalogue's address)."""
        values = {spec.name: spec.default for spec in self.method.config_fields if spec.name != "base_url"}
        return self.provider.base_url({**values, **self.config})

    def values_to_redact(self) -> list[str]:
        """Every secret text to keep out of answers, messages and logs."""
        return self.method.values_to_redact(self.secrets)

    def cache_key(self, *identity: Hashable) -> tuple:
        """A key for something obtained with these credentials (an access token), plus what else it depends on."""
        return (self.id, self.secrets_version, *identity)
