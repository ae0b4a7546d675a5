"""The audit log's move out of the connections app: every entry keeps what it said, and so do permissions."""

import pytest
from django.db import connection as database
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("audit", None), ("connections", "0001_initial"), ("contenttypes", "0002_remove_content_type_name"),
          ("auth", "0012_alter_user_first_name_max_length")]
AFTER = [("audit", "0002_entries_name_their_subject")]


def migrate(targets):
    executor = MigrationExecutor(database)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([target for target in targets if target[1] is not None]).apps


def test_entries_and_the_view_permission_survive_the_move_and_the_way_back(django_user_model):
    old = migrate(BEFORE)
    Connection, OldEntry = old.get_model("connections", "Connection"), old.get_model("connections", "AuditEntry")
    ContentType, Permission = old.get_model("contenttypes", "ContentType"), old.get_model("auth", "Permission")
    User = old.get_model("auth", "User")
    kept = Connection.objects.create(name="kept", provider="openai", auth_method="api_key", secrets="", config={})
    OldEntry.objects.create(actor_name="root", action="created", connection=kept, connection_name="kept",
                            fields=["name"])
    OldEntry.objects.create(actor_name="root", action="deleted", connection=None, connection_name="gone")
    OldEntry.objects.create(actor_name="root", action="token_created", fields=["token llmc_abc123", "owner root"])
    OldEntry.objects.create(actor_name="system", action="encryption_key_rotated", fields=["secrets"])
    # As on a server installed before the move: the model's content type and permissions under connections.
    ContentType.objects.filter(model="auditentry").delete()
    content_type = ContentType.objects.create(app_label="connections", model="auditentry")
    permission = Permission.objects.create(content_type=content_type, codename="view_auditentry", name="Can view")
    auditor = User.objects.create(username="auditor")
    auditor.user_permissions.add(permission)

    new = migrate(AFTER)
    Entry = new.get_model("audit", "AuditEntry")
    entries = list(Entry.objects.order_by("id").values_list("action", "subject_type", "subject_id", "subject_name"))
    assert entries == [
        ("created", "connection", kept.pk, "kept"),
        ("deleted", "connection", None, "gone"),
        ("token_created", "token", None, ""),
        ("encryption_key_rotated", "", None, ""),
    ]
    moved = new.get_model("contenttypes", "ContentType").objects.get(pk=content_type.pk)
    assert (moved.app_label, moved.model) == ("audit", "auditentry")
    assert django_user_model.objects.get(username="auditor").has_perm("audit.view_auditentry")

    back = migrate(BEFORE)
    OldEntry = back.get_model("connections", "AuditEntry")
    assert list(OldEntry.objects.order_by("id").values_list("action", "connection_id", "connection_name")) == [
        ("created", kept.pk, "kept"), ("deleted", None, "gone"), ("token_created", None, ""),
        ("encryption_key_rotated", None, "")]
    assert back.get_model("contenttypes", "ContentType").objects.get(pk=content_type.pk).app_label == "connections"
    migrate(executor_leaf_nodes())


def executor_leaf_nodes():
    executor = MigrationExecutor(database)
    executor.loader.build_graph()
    return executor.loader.graph.leaf_nodes()
