"""Connection: encryption at rest, undecryptable rows, masking, names, PROTECT, timestamps and audit."""

import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.db import connection as db_connection
from django.db.models import ProtectedError

from audit.models import AuditEntry
from connections.models import Connection
from connections.secrets import SecretsUnavailable, mask_secret
from connections.services import ConnectionInUse, connection_delete, connection_save
from providers.catalogue import PROVIDERS
from tests.conftest import PLANTED_KEY
from tests.providers.catalogue_cases import SERVICE_ACCOUNT

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def raw_secrets_column(pk: int) -> str:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


# --- Encryption at rest ----------------------------------------------------------------------------


def test_the_database_column_holds_no_plaintext(make_connection):
    connection = make_connection(name="planted")
    raw = raw_secrets_column(connection.pk)
    assert PLANTED_KEY not in raw and "api_key" not in raw
    assert raw.startswith("gAAAA")  # a Fernet token
    assert Connection.objects.get(pk=connection.pk).get_secrets() == {"api_key": PLANTED_KEY}


def test_a_key_list_reads_old_rows_and_resaves_them_under_the_new_key(make_connection, use_keys):
    use_keys(KEY_A)
    connection = make_connection(name="rotating")
    use_keys(KEY_B, KEY_A)
    loaded = Connection.objects.get(pk=connection.pk)
    assert loaded.get_secrets() == {"api_key": PLANTED_KEY}
    loaded.secrets = dict(loaded.secrets)  # force a write of the same value
    loaded.save()
    assert Fernet(KEY_B).decrypt(raw_secrets_column(connection.pk).encode())
    use_keys(KEY_B)
    assert Connection.objects.get(pk=connection.pk).get_secrets() == {"api_key": PLANTED_KEY}


def test_a_row_no_key_decrypts_loads_as_a_placeholder_that_refuses_use(make_connection, use_keys):
    use_keys(KEY_A)
    connection = make_connection(name="lost-key")
    use_keys(KEY_B)
    loaded = Connection.objects.get(pk=connection.pk)  # loading never fails
    assert not loaded.secrets_decryptable
    assert loaded.credentials_display == "cannot be decrypted"
    assert loaded.masked_secrets() == {"api_key": "cannot be decrypted"}
    with pytest.raises(SecretsUnavailable) as caught:
        loaded.get_secrets()
    assert "lost-key" in str(caught.value)
    with pytest.raises(SecretsUnavailable):
        loaded.secrets["api_key"]
    assert "gAAAA" not in repr(loaded.secrets) and "gAAAA" not in str(caught.value)


def test_saving_an_undecryptable_row_keeps_its_ciphertext(make_connection, use_keys):
    use_keys(KEY_A)
    connection = make_connection(name="lost-key")
    ciphertext = raw_secrets_column(connection.pk)
    use_keys(KEY_B)
    loaded = Connection.objects.get(pk=connection.pk)
    loaded.description = "still editable"
    loaded.update_secrets({})
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    assert raw_secrets_column(connection.pk) == ciphertext
    use_keys(KEY_A)  # the old key comes back: nothing was lost
    assert Connection.objects.get(pk=connection.pk).get_secrets() == {"api_key": PLANTED_KEY}


def test_re_entering_the_secret_repairs_an_undecryptable_row(make_connection, use_keys):
    use_keys(KEY_A)
    connection = make_connection(name="lost-key")
    use_keys(KEY_B)
    loaded = Connection.objects.get(pk=connection.pk)
    loaded.update_secrets({"api_key": "sk-new-0123456789abcdefghij"})
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    assert Connection.objects.get(pk=connection.pk).get_secrets() == {"api_key": "sk-new-0123456789abcdefghij"}


def test_an_undecryptable_row_can_be_deleted(make_connection, use_keys):
    use_keys(KEY_A)
    connection = make_connection(name="lost-key")
    use_keys(KEY_B)
    connection_delete(connection=Connection.objects.get(pk=connection.pk), actor=None)
    assert not Connection.objects.exists()


# --- Masking ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, mask",
    [
        ("a" * 19, "********"),
        ("sk-" + "x" * 13 + "wxyz", "sk-...wxyz"),  # exactly 20
        ("sk-proj-0123456789abcdefWXYZ", "sk-...WXYZ"),
        ("", "********"),
    ],
)
def test_masks_show_three_and_four_characters_only_from_twenty(value, mask):
    assert mask_secret(value) == mask


def test_a_service_account_mask_shows_its_email_and_nothing_of_the_key():
    key_file = PROVIDERS["vertex_ai"].auth_method("service_account").secret_field("service_account_json")

    mask = mask_secret(json.dumps(SERVICE_ACCOUNT), key_file)
    assert mask == "service account gateway@my-project-123.iam.gserviceaccount.com"
    assert "PRIVATE" not in mask


def test_several_secrets_are_listed_with_their_labels(make_connection):
    connection = make_connection(
        name="aws", provider="bedrock", auth_method="access_key", config={"region": "us-east-1"},
        secrets={"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENGEXAMPLEKEY"},
    )
    assert connection.credentials_display == "Access key ID: AKI...MPLE, Secret access key: wJa...EKEY"


# --- Names, repr ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "openai-prod", "anthropic_dev2", "x" * 64])
def test_good_names_pass(name, db):
    Connection(name=name, provider="ollama", auth_method="none").full_clean()


@pytest.mark.parametrize(
    "name, fragment",
    [("My-Key", "lowercase"), ("OPENAI", "lowercase"), ("1key", "starting with a letter"),
     ("-key", "starting with a letter"), ("key name", "Use lowercase letters, digits"), ("x" * 65, "64"),
     ("clé", "Use lowercase letters, digits"), ("", "cannot be blank")],
)
def test_bad_names_are_refused_with_a_clear_message(name, fragment, db):
    with pytest.raises(ValidationError) as caught:
        Connection(name=name, provider="ollama", auth_method="none").full_clean()
    assert any(fragment in message for message in caught.value.message_dict["name"])


def test_names_are_unique_and_never_case_folded(make_connection):
    make_connection(name="shared")
    with pytest.raises(ValidationError) as caught:
        Connection(name="shared", provider="ollama", auth_method="none").full_clean()
    assert "already exists" in caught.value.message_dict["name"][0]
    with pytest.raises(ValidationError) as caught:
        Connection(name="Shared", provider="ollama", auth_method="none").full_clean()
    assert "try 'shared'" in caught.value.message_dict["name"][0]


def test_repr_and_str_carry_no_secret(make_connection):
    connection = make_connection(name="planted")
    assert PLANTED_KEY not in repr(connection) and PLANTED_KEY not in str(connection)
    assert "sk-" not in repr(connection)


# --- Secrets: merging and timestamps ---------------------------------------------------------------


def test_secrets_updated_at_moves_only_when_a_secret_changes(make_connection):
    connection = make_connection(name="ts")
    first = connection.secrets_updated_at
    assert first is not None

    loaded = Connection.objects.get(pk=connection.pk)
    loaded.description = "renamed nothing"
    loaded.update_secrets({"api_key": ""})  # blank keeps
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    assert Connection.objects.get(pk=connection.pk).secrets_updated_at == first

    loaded.update_secrets({"api_key": "sk-rotated-0123456789abcdef"})
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    assert Connection.objects.get(pk=connection.pk).secrets_updated_at > first


def test_changing_the_auth_method_drops_the_old_secrets_and_needs_new_ones(make_connection):
    loaded = Connection.objects.get(pk=make_connection(name="switch").pk)
    loaded.auth_method = "azure"
    loaded.config = {"endpoint_url": "https://r.openai.azure.com", "api_version": "2024-10-21"}
    loaded.update_secrets({})
    with pytest.raises(ValidationError) as caught:
        loaded.full_clean()
    assert list(caught.value.message_dict) == ["secrets.api_key"]
    loaded.update_secrets({"api_key": "sk-azure-0123456789abcdefgh"})
    loaded.full_clean()
    assert loaded.secrets == {"api_key": "sk-azure-0123456789abcdefgh"}


def test_an_echoed_mask_never_overwrites_the_stored_secret(make_connection):
    loaded = Connection.objects.get(pk=make_connection(name="echo").pk)
    loaded.update_secrets({"api_key": loaded.masked_secrets()["api_key"]})
    with pytest.raises(ValidationError) as caught:
        loaded.full_clean()
    assert "masked value" in caught.value.message_dict["secrets.api_key"][0]


# --- Endpoints protect their connection -------------------------------------------------------------


def test_an_endpoint_enabled_or_not_protects_its_connection(make_connection, make_endpoint):
    connection = make_connection(name="used")
    make_endpoint("chat-a", connection, enabled=False)
    with pytest.raises(ProtectedError):
        connection.delete()
    with pytest.raises(ConnectionInUse) as caught:
        connection_delete(connection=connection, actor=None)
    assert caught.value.endpoint_names == ["chat-a"]
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert not AuditEntry.objects.filter(action="deleted").exists()


def test_a_renamed_connection_keeps_its_endpoints(make_connection, make_endpoint):
    connection = make_connection(name="before")
    endpoint = make_endpoint("chat-a", connection)
    connection.name = "after"
    connection.full_clean()
    connection_save(connection=connection, actor=None)
    endpoint.refresh_from_db()
    assert endpoint.destinations.get().connection.name == "after"


# --- Audit ------------------------------------------------------------------------------------------


def test_every_write_is_audited_with_the_user_and_field_names_only(make_connection, admin_user):
    connection = make_connection(name="audited", actor=admin_user)
    loaded = Connection.objects.get(pk=connection.pk)
    loaded.update_secrets({"api_key": "sk-second-0123456789abcdefgh"})
    loaded.full_clean()
    connection_save(connection=loaded, actor=admin_user)
    loaded.description = "now described"
    loaded.config = {"organization": "org-1"}
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    connection_delete(connection=loaded, actor=admin_user)

    entries = list(AuditEntry.objects.order_by("id").values_list("actor_name", "action", "subject_name", "fields"))
    assert entries == [
        ("root", "created", "audited", ["name", "provider", "auth_method", "environment", "team", "secrets.api_key"]),
        ("root", "key_rotated", "audited", ["secrets.api_key"]),
        ("system", "updated", "audited", ["description", "config.organization"]),
        ("root", "deleted", "audited", []),
    ]
    assert AuditEntry.objects.filter(subject_type="connection", subject_name="audited").count() == 4  # kept after the delete
    dump = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert PLANTED_KEY not in dump and "sk-second" not in dump and "org-1" not in dump


def test_a_save_without_changes_writes_nothing(make_connection):
    connection = make_connection(name="same")
    loaded = Connection.objects.get(pk=connection.pk)
    loaded.update_secrets({})
    loaded.full_clean()
    connection_save(connection=loaded, actor=None)
    assert AuditEntry.objects.count() == 1
