"""The gateway's hand-written endpoint read gives what the ORM gives, in one query, and never a stale row."""

import pytest
from cryptography.fernet import Fernet

from connections.models import Connection
from connections.secrets import SecretsUnavailable
from endpoints.models import Destination, Endpoint
from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


@pytest.fixture
def endpoint(make_connection, make_endpoint, admin_user):
    connection = make_connection(
        "openai-prod", config={"organization": "org-123", "base_url": "https://proxy.example.com/v1"}, actor=admin_user
    )
    backup = make_connection("backup", provider="mistral")
    return make_endpoint("chat-prod", connection, model="gpt-4o", enabled=False,
                         fallbacks=((backup, "mistral-small"), (connection, "gpt-4o-mini")))


def connection_of(endpoint: Endpoint, index: int = 0) -> Connection:
    return endpoint.routes[index].connection()


def test_the_endpoint_its_destinations_and_their_connections_are_what_the_orm_loads(endpoint,
                                                                                    django_assert_num_queries):
    with django_assert_num_queries(1):
        found = Endpoint.objects.for_call("chat-prod")
        connections = [route.connection() for route in found.routes]

    expected = Endpoint.objects.get(name="chat-prod")
    assert field_values(found) == field_values(expected)
    destinations = list(expected.destinations.select_related("connection").order_by("position"))
    assert [field_values(r.destination) for r in found.routes] == [field_values(d) for d in destinations]
    assert [field_values(c) for c in connections] == [field_values(d.connection) for d in destinations]
    assert [r.label for r in found.routes] == ["openai-prod/gpt-4o", "backup/mistral-small", "openai-prod/gpt-4o-mini"]
    assert connections[0] is connections[2]  # one connection, built (and decrypted) once
    assert found.created_at.tzinfo is not None and connections[0].secrets_updated_at.tzinfo is not None
    assert connections[0].config["organization"] == "org-123"
    assert connections[0].get_secrets() == {"api_key": PLANTED_KEY}


def test_destinations_come_in_the_order_of_their_positions_whatever_order_they_were_added_in(endpoint):
    # The fallbacks swapped, as the form and the API reorder them: positions no longer follow the rows' ids.
    Destination.objects.filter(endpoint=endpoint, model="mistral-small").update(position=2)
    Destination.objects.filter(endpoint=endpoint, model="gpt-4o-mini").update(position=1)

    found = Endpoint.objects.for_call("chat-prod")
    assert [r.label for r in found.routes] == ["openai-prod/gpt-4o", "openai-prod/gpt-4o-mini", "backup/mistral-small"]


def test_the_loaded_connection_saves_like_one_the_orm_loaded(endpoint):
    found = connection_of(Endpoint.objects.for_call("chat-prod"))
    found.description = "edited"
    assert found.changed_fields() == ["description"]  # nothing else looks changed: the snapshot was taken
    found.save()

    assert Connection.objects.get(pk=found.pk).get_secrets() == {"api_key": PLANTED_KEY}


def test_an_unknown_name_is_none(endpoint, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert Endpoint.objects.for_call("chat-staging") is None


def test_every_call_reads_the_current_row(endpoint):
    assert connection_of(Endpoint.objects.for_call("chat-prod")).get_secrets() == {"api_key": PLANTED_KEY}

    connection = Connection.objects.get(name="openai-prod")
    connection.update_secrets({"api_key": "sk-rotated-0123456789abcdef"})
    connection.save()
    Endpoint.objects.filter(name="chat-prod").update(enabled=True)

    found = Endpoint.objects.for_call("chat-prod")
    assert found.enabled is True
    assert connection_of(found).get_secrets() == {"api_key": "sk-rotated-0123456789abcdef"}


def test_secrets_no_configured_key_decrypts_load_as_the_placeholder(endpoint, use_keys):
    use_keys(Fernet.generate_key().decode())

    connection = connection_of(Endpoint.objects.for_call("chat-prod"))
    assert not connection.secrets_decryptable
    with pytest.raises(SecretsUnavailable):
        connection.get_secrets()


def test_a_shared_read_runs_the_statement_every_time_and_sees_every_change(endpoint, django_assert_num_queries):
    with django_assert_num_queries(1):
        first = Endpoint.objects.for_call("chat-prod", shared=True)
    with django_assert_num_queries(1):
        again = Endpoint.objects.for_call("chat-prod", shared=True)
    assert again is first  # the same rows: nothing built again

    connection = Connection.objects.get(name="openai-prod")
    connection.update_secrets({"api_key": "sk-rotated-0123456789abcdef"})
    connection.save()
    rotated = Endpoint.objects.for_call("chat-prod", shared=True)
    assert connection_of(rotated).get_secrets() == {"api_key": "sk-rotated-0123456789abcdef"}

    rotated.routes[0].destination.start_cooldown(30)
    cooled = Endpoint.objects.for_call("chat-prod", shared=True)
    assert cooled is not rotated and cooled.routes[0].cooling_until is not None

    Endpoint.objects.filter(name="chat-prod").update(enabled=True)
    assert Endpoint.objects.for_call("chat-prod", shared=True).enabled is True
    assert Endpoint.objects.for_call("chat-prod", shared=True, user_id=-1) is None  # another key, another read


def test_a_shared_read_is_built_again_when_the_encryption_keys_change(endpoint, use_keys):
    assert connection_of(Endpoint.objects.for_call("chat-prod", shared=True)).get_secrets() == {"api_key": PLANTED_KEY}

    use_keys(Fernet.generate_key().decode())

    with pytest.raises(SecretsUnavailable):
        connection_of(Endpoint.objects.for_call("chat-prod", shared=True)).get_secrets()
