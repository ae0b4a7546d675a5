"""How stored secrets look from outside: masks, and the placeholder for values no key decrypts."""

import json

from providers.catalogue import SecretField

UNDECRYPTABLE_LABEL = "cannot be decrypted"
SHORT_SECRET_MASK = "********"
MASK_MIN_LENGTH = 20  # shorter secrets would give away too much of themselves


class SecretsUnavailable(Exception):
    """Raised when a connection's secrets are needed but no configured key decrypts them."""

    def __init__(self, connection_name: str = ""):
        self.connection_name = connection_name
        subject = f"Connection '{connection_name}'" if connection_name else "This connection"
        super().__init__(
            f"{subject}: the stored secrets cannot be decrypted with any configured FIELD_ENCRYPTION_KEY. "
            "Re-enter the secret, or restore the key that encrypted it."
        )


class UndecryptableSecrets:
    """Stands in for a secrets dict that no configured key decrypts.

    It keeps the ciphertext so that saving the row (say, after editing its description) writes it back
    unchanged, and it refuses every read so the ciphertext is never mistaken for a value.
    """

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str):
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return f"<secrets: {UNDECRYPTABLE_LABEL}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UndecryptableSecrets) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)

    # Reads fail loudly; the model re-raises with the connection's name.
    def __getitem__(self, key: str):
        raise SecretsUnavailable()

    def get(self, key: str, default=None):
        raise SecretsUnavailable()

    def __iter__(self):
        raise SecretsUnavailable()

    def items(self):
        raise SecretsUnavailable()


def mask_secret(value: str, spec: SecretField | None = None) -> str:
    """The one way a stored secret is shown.

    `sk-...wxyz` (first 3 and last 4) for secrets of 20 characters or more, `********` for shorter ones;
    a key file (a field the catalogue calls a document) shows what its description allows, such as whose
    service account it is, and nothing of the key.
    """
    if spec is not None and spec.document is not None:
        description = describe_document(value, spec)
        if description:
            return description
    if len(value) < MASK_MIN_LENGTH:
        return SHORT_SECRET_MASK
    return f"{value[:3]}...{value[-4:]}"


def describe_document(value: str, spec: SecretField) -> str | None:
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return spec.document.describe(document) if isinstance(document, dict) else None


def looks_like_a_mask(value: str) -> bool:
    """True for anything we display in place of a secret, so an echoed placeholder never becomes a key."""
    return (
        value == SHORT_SECRET_MASK
        or value == UNDECRYPTABLE_LABEL
        or value.startswith("service account ")
        or (len(value) == 10 and value[3:6] == "...")
    )
