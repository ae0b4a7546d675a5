"""The connections app's part of `/healthz` (core/health.py): the configured keys read the stored secrets."""

import time

from cryptography.fernet import InvalidToken
from encrypted_model_fields import fields as encrypted_fields

from .models import Connection

# How many of the most recently written secrets are read to judge the configured keys.
HEALTH_SAMPLE = 5
PROBLEM = "the configured FIELD_ENCRYPTION_KEY does not decrypt the stored secrets"


def keys_read_the_stored_secrets(earlier: dict[str, str]) -> tuple[str, str]:
    """The configured keys encrypt, decrypt and read at least one of the most recently written secrets.

    A key set that reads none of them is a misconfigured server (503, so a load balancer takes it out). One
    connection no key decrypts is that connection's problem, not the server's: it answers its own 503 on the
    gateway while the others keep working, so health stays 200 and `rotate_encryption_key --check` names it.
    """
    recent: list[Connection] = []
    if earlier.get("database") == "ok":
        try:
            recent = list(Connection.objects.order_by("-secrets_updated_at").only("id", "name", "secrets")[:HEALTH_SAMPLE])
        except Exception:  # noqa: BLE001 - the database check reports outages; the keys can still be probed
            pass
    probe = str(time.time())
    try:
        if encrypted_fields.decrypt_str(encrypted_fields.encrypt_str(probe).decode()) != probe:
            return "encryption", PROBLEM
    except InvalidToken:
        return "encryption", PROBLEM
    if recent and not any(connection.secrets_decryptable for connection in recent):
        return "encryption", PROBLEM
    return "encryption", "ok"
