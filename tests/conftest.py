import pytest
from cryptography.fernet import Fernet, MultiFernet
from encrypted_model_fields import fields as encrypted_fields

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint

# Which tests run on which database (SQLite always; the database-touching ones on PostgreSQL too).
pytest_plugins = ["tests.databases"]

# A distinctive value tests plant and then look for everywhere a secret must not appear.
PLANTED_KEY = "sk-planted-SECRET-0123456789-abcdefWXYZ"


@pytest.fixture
def use_keys(monkeypatch, settings):
    """Switch the field encryption keys (first encrypts, all decrypt) as a restarted process would see them."""

    def switch(*keys: str) -> None:
        settings.FIELD_ENCRYPTION_KEY = list(keys)
        monkeypatch.setattr(encrypted_fields, "CRYPTER", MultiFernet([Fernet(k) for k in keys]))

    return switch


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-123456")


@pytest.fixture
def make_connection(db):
    def make(name: str = "openai-prod", provider: str = "openai", auth_method: str = "api_key",
             secrets: dict | None = None, config: dict | None = None, actor=None, **fields) -> Connection:
        connection = Connection(name=name, provider=provider, auth_method=auth_method, config=config or {}, **fields)
        connection.update_secrets(secrets if secrets is not None else {"api_key": PLANTED_KEY})
        connection.full_clean()
        return connection_save(connection=connection, actor=actor)

    return make


@pytest.fixture
def make_endpoint(db):
    def make(name: str, connection: Connection, model: str = "gpt-4o-mini", task: str = "chat", **fields) -> Endpoint:
        endpoint = Endpoint(name=name, connection=connection, model=model, task=task, **fields)
        endpoint.full_clean()
        endpoint.save()
        return endpoint

    return make
