"""The encrypted column that holds a connection's secrets dict."""

import json

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
            plaintext = encrypted_fields.decrypt_str(value)
        except cryptography.fernet.InvalidToken:
            return UndecryptableSecrets(value)
        return json.loads(plaintext)

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
