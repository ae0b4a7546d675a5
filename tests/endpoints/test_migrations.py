"""Endpoints from before destinations become one primary destination at weight 100, and back, losing nothing."""

import pytest
from django.db import connection as database
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("endpoints", "0004_endpoints_may_allow_mixed_environments")
AFTER = ("endpoints", "0007_remove_endpoint_connection_and_model")


def migrate(targets):
    executor = MigrationExecutor(database)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(database)
    return executor.loader.graph.leaf_nodes()


def at(endpoints_migration):
    """Endpoints at this migration, every other app at its latest (the connections' later fields exist)."""
    return [node for node in latest() if node[0] != "endpoints"] + [endpoints_migration]


def test_each_endpoint_moves_to_one_primary_destination_and_back():
    old = migrate(at(BEFORE))
    Connection, Endpoint = old.get_model("connections", "Connection"), old.get_model("endpoints", "Endpoint")
    team, _ = old.get_model("teams", "Team").objects.get_or_create(name="default")  # connections are at their latest
    prod = Connection.objects.create(name="openai-prod", provider="openai", auth_method="api_key", secrets="", config={},
                                     team=team)
    claude = Connection.objects.create(name="claude", provider="anthropic", auth_method="api_key", secrets="", config={},
                                     team=team)
    Endpoint.objects.create(name="chat", connection=prod, model="gpt-4o-mini", task="chat", enabled=True)
    Endpoint.objects.create(name="embed", connection=prod, model="text-embedding-3-small", task="embeddings",
                            enabled=False)
    Endpoint.objects.create(name="claude-chat", connection=claude, model="claude-3-5-haiku", task="chat")

    new = migrate(at(AFTER))
    Destination = new.get_model("endpoints", "Destination")
    assert sorted(Destination.objects.values_list(
        "endpoint__name", "connection__name", "model", "role", "weight", "position", "cooling_until")) == [
        ("chat", "openai-prod", "gpt-4o-mini", "primary", 100, 0, None),
        ("claude-chat", "claude", "claude-3-5-haiku", "primary", 100, 0, None),
        ("embed", "openai-prod", "text-embedding-3-small", "primary", 100, 0, None),
    ]
    Endpoint = new.get_model("endpoints", "Endpoint")
    assert sorted(Endpoint.objects.values_list("name", "task", "enabled")) == [
        ("chat", "chat", True), ("claude-chat", "chat", True), ("embed", "embeddings", False)]
    # A split added after the move: going back keeps the heaviest primary.
    chat = Endpoint.objects.get(name="chat")
    Destination.objects.filter(endpoint=chat).update(weight=30)
    Destination.objects.create(endpoint=chat, connection_id=claude.pk, model="claude-3-5-sonnet", role="primary",
                               weight=70, position=1)
    Destination.objects.create(endpoint=chat, connection_id=prod.pk, model="gpt-4o", role="fallback", position=2)

    back = migrate(at(BEFORE))
    Endpoint = back.get_model("endpoints", "Endpoint")
    assert sorted(Endpoint.objects.values_list("name", "connection__name", "model", "task", "enabled")) == [
        ("chat", "claude", "claude-3-5-sonnet", "chat", True),
        ("claude-chat", "claude", "claude-3-5-haiku", "chat", True),
        ("embed", "openai-prod", "text-embedding-3-small", "embeddings", False),
    ]
    migrate(latest())
