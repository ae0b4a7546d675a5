"""The encrypted column that holds a connection's secrets dict."""

import json
from functools import lru_cache

import cryptography.fernet
from encrypted_model_fields import fields as encrypted_fields

from .secrets import UndecryptableSecrets


class EncryptedSecretsField(encrypted_fields.EncryptedTextField):
    """A dict of secret fields, stored as Fernet-encrypted JSON.

    Unlike the library's field, which hands back the ciphertext itself as if it were the value, a value
    that no configured key decrypts loads as an `UndecryptableSecrets` placeholder, which saves back
    unchanged and refuses to be read.
    """

    def from_db_value(self, value, expression, connection):
        if value is None:
            return {}
        try:
            plaintext = decrypted(encrypted_fields.CRYPTER, value)
        except cryptography.fernet.InvalidToken:
            return UndecryptableSecrets(value)
        return json.loads(plaintext)  # a dict of its own for each row read

    def to_python(self, value):
        # Values reach the model as dicts (forms and serializers build them); never decrypt here.
        return value

    def get_prep_value(self, value):
        return value

    def get_db_prep_save(self, value, connection):
        if isinstance(value, UndecryptableSecrets):
            return value.ciphertext
        if value is None:
            value = {}
        plaintext = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return encrypted_fields.encrypt_str(plaintext).decode("utf-8")

    def value_to_string(self, obj):
        # Used by dumpdata/serializers: write the ciphertext, never the plaintext.
        return self.get_db_prep_save(self.value_from_object(obj), connection=None)


@lru_cache(maxsize=1024)
def decrypted(crypter, ciphertext: str) -> str:
    """The plaintext of a stored value, remembered by ciphertext (and by the keys, which may be swapped).

    The gateway reads a connection's row on every call: verifying and decrypting it again was a measurable part
    of a call's CPU. Any change of the secrets writes a new ciphertext, so an entry is never stale; the process
    holds the keys that decrypt every row anyway. A value no key decrypts raises, and is not remembered.
    """
    return crypter.decrypt(ciphertext.encode("utf-8")).decode("utf-8")
