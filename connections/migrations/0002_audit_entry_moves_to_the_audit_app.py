# The audit log now belongs to the audit app (audit 0001 took over the model's state; the table stays).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0001_initial"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")],
            database_operations=[],
        ),
    ]
