import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from endpoints.models import Destination, Endpoint


def destination(connection, model="m", role="primary", weight=None, endpoint=None) -> Destination:
    found = Destination(connection=connection, model=model, role=role, weight=weight)
    found.endpoint = endpoint or Endpoint(name="e", task="chat")
    return found


def test_a_destinations_provider_must_serve_the_task(make_connection):
    anthropic = make_connection(name="claude", provider="anthropic")
    with pytest.raises(ValidationError) as caught:
        destination(anthropic, weight=100, endpoint=Endpoint(name="embed", task="embeddings")).full_clean(
            exclude=["endpoint"], validate_constraints=False)
    assert "Anthropic does not support embeddings (connection claude)" in caught.value.message_dict["connection"][0]


def test_an_unknown_task_is_named(db):
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="e", task="images").full_clean()
    assert caught.value.message_dict["task"] == ["Unknown task 'images': use chat or embeddings."]


def test_endpoint_names_follow_the_connection_rules(db):
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="Chat").full_clean()
    assert "lowercase" in caught.value.message_dict["name"][0]


def test_a_fallback_carries_no_weight_and_a_primary_needs_one(make_connection):
    openai = make_connection()
    fallback = destination(openai, role="fallback", weight=40)
    fallback.full_clean(exclude=["endpoint"], validate_constraints=False)
    assert fallback.weight is None
    with pytest.raises(ValidationError) as caught:
        destination(openai).full_clean(exclude=["endpoint"], validate_constraints=False)
    assert caught.value.message_dict["weight"] == ["Give a primary destination a weight from 1 to 100."]


@pytest.mark.parametrize(("build", "message"), [
    (lambda a, b: [], "Add at least one primary destination."),
    (lambda a, b: [destination(a, role="fallback")], "Add at least one primary destination."),
    (lambda a, b: [destination(a, weight=60), destination(b, weight=30)],
     "The primary destinations' weights add up to 90; they must add up to 100."),
    (lambda a, b: [destination(a, weight=100), destination(b, role="fallback"), destination(b, role="fallback")],
     "b/m is listed twice as a fallback destination."),
    (lambda a, b: [destination(a, weight=100)] + [destination(b, model=f"m{i}", role="fallback") for i in range(10)],
     "An endpoint has at most 10 destinations (11 given)."),
])
def test_a_set_of_destinations_keeps_its_rules(make_connection, build, message):
    a, b = make_connection("a"), make_connection("b")
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="e").check_destinations(build(a, b))
    assert message in caught.value.message_dict["destinations"]


def test_the_same_connection_and_model_may_be_a_primary_and_a_fallback(make_connection):
    a = make_connection("a")
    Endpoint(name="e").check_destinations([destination(a, weight=100), destination(a, role="fallback")])


def test_the_database_refuses_a_duplicate_and_a_weight_that_does_not_fit_the_role(make_connection, make_endpoint):
    a = make_connection("a")
    endpoint = make_endpoint("chat", a, model="m")
    with pytest.raises(IntegrityError), transaction.atomic():
        Destination.objects.create(endpoint=endpoint, connection=a, model="m", role="primary", weight=100)
    with pytest.raises(IntegrityError), transaction.atomic():
        Destination.objects.create(endpoint=endpoint, connection=a, model="other", role="fallback", weight=5)


def test_a_connection_used_only_as_a_fallback_cannot_be_deleted(make_connection, make_endpoint):
    primary, backup = make_connection("a"), make_connection("backup")
    make_endpoint("chat", primary, fallbacks=((backup, "m"),))
    with pytest.raises(ProtectedError):
        backup.delete()
    assert list(backup.endpoints.values_list("name", flat=True)) == ["chat"]
