import pytest
from django.core.exceptions import ValidationError

from endpoints.models import Endpoint


def test_the_task_must_be_one_the_provider_supports(make_connection):
    anthropic = make_connection(name="claude", provider="anthropic")
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="embed", connection=anthropic, model="claude-x", task="embeddings").full_clean()
    assert "Anthropic does not support embeddings" in caught.value.message_dict["task"][0]


def test_an_unknown_task_is_named(make_connection):
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="e", connection=make_connection(), model="m", task="images").full_clean()
    assert caught.value.message_dict["task"] == ["Unknown task 'images': use chat or embeddings."]


def test_endpoint_names_follow_the_connection_rules(make_connection):
    with pytest.raises(ValidationError) as caught:
        Endpoint(name="Chat", connection=make_connection(), model="m").full_clean()
    assert "lowercase" in caught.value.message_dict["name"][0]
