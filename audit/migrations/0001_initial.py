# The audit log moves out of the connections app: this takes over the model's state, with the table and
# columns exactly as the connections app created them (connections 0002 lets go of it).

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("connections", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEntry",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("actor_name", models.CharField(help_text="The username at the time, or 'system'.", max_length=150)),
                        ("action", models.CharField(choices=[("created", "Created"), ("updated", "Updated"), ("key_rotated", "Key rotated"), ("deleted", "Deleted"), ("encryption_key_rotated", "Encryption key rotated"), ("token_created", "API token created"), ("token_revoked", "API token revoked")], max_length=32)),
                        ("connection_name", models.CharField(blank=True, help_text="The name at the time.", max_length=64)),
                        ("fields", models.JSONField(blank=True, default=list, help_text="Names of the fields that changed.")),
                        ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("connection", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="connections.connection")),
                    ],
                    options={
                        "verbose_name_plural": "audit entries",
                        "ordering": ["-at", "-id"],
                        "db_table": "connections_auditentry",
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
