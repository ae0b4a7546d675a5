# Entries name their subject (a connection, an endpoint or a token) by type, id and name at the time,
# instead of a foreign key to connections: the log sits below every app that writes to it. Existing
# entries keep what they said; the users' permission to view the log keeps working under its new app.

from django.db import migrations, models

TOKEN_ACTIONS = ("token_created", "token_revoked")


def name_the_subjects(apps, schema_editor):
    AuditEntry = apps.get_model("audit", "AuditEntry")
    AuditEntry.objects.filter(action__in=TOKEN_ACTIONS).update(subject_type="token")
    about_connections = AuditEntry.objects.exclude(action__in=TOKEN_ACTIONS).exclude(subject_name="")
    about_connections.update(subject_type="connection", subject_id=models.F("connection_id"))


def name_them_by_connection_again(apps, schema_editor):
    AuditEntry = apps.get_model("audit", "AuditEntry")
    Connection = apps.get_model("connections", "Connection")
    existing = set(Connection.objects.values_list("pk", flat=True))
    for entry in AuditEntry.objects.filter(subject_type="connection").exclude(subject_id=None):
        if entry.subject_id in existing:
            AuditEntry.objects.filter(pk=entry.pk).update(connection_id=entry.subject_id)
    AuditEntry.objects.exclude(subject_type="connection").update(subject_name="")


def move_the_permissions(apps, schema_editor):
    """The content type (and with it the permissions users hold) follows the model to its new app."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="audit", model="auditentry").exists():
        ContentType.objects.filter(app_label="connections", model="auditentry").update(app_label="audit")


def move_the_permissions_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="connections", model="auditentry").exists():
        ContentType.objects.filter(app_label="audit", model="auditentry").update(app_label="connections")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        ("connections", "0002_audit_entry_moves_to_the_audit_app"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RenameField("auditentry", "connection_name", "subject_name"),
        migrations.AlterField(
            "auditentry", "subject_name",
            models.CharField(blank=True, help_text="The subject's name at the time.", max_length=64),
        ),
        migrations.AddField(
            "auditentry", "subject_type",
            models.CharField(blank=True, default="", max_length=16, choices=[
                ("connection", "Connection"), ("endpoint", "Endpoint"), ("token", "API token"), ("", "—")]),
        ),
        migrations.AddField(
            "auditentry", "subject_id",
            models.BigIntegerField(blank=True, null=True, help_text="The subject's primary key, if it had one."),
        ),
        migrations.RunPython(name_the_subjects, name_them_by_connection_again),
        migrations.RemoveField("auditentry", "connection"),
        migrations.AlterModelTable("auditentry", None),
        migrations.AddIndex("auditentry", models.Index(fields=["subject_type", "subject_id"], name="audit_subject")),
        migrations.RunPython(move_the_permissions, move_the_permissions_back),
    ]
