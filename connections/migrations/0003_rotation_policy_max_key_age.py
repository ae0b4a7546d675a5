# The rotation policy: a connection's own maximum key age and the due date it implies.

import django.core.validators
from django.db import migrations, models
from django.db.models import F


def key_set_at_creation(apps, schema_editor):
    """Rows whose credentials never changed since creation: their key is as old as the row."""
    Connection = apps.get_model("connections", "Connection")
    Connection.objects.filter(secrets_updated_at__isnull=True).update(secrets_updated_at=F("created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0002_audit_entry_moves_to_the_audit_app'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='key_max_age_days',
            field=models.PositiveIntegerField(blank=True, help_text="Rotate the key at least this often. Empty: the server's KEY_MAX_AGE_DAYS.", null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(3650)], verbose_name='maximum key age (days)'),
        ),
        migrations.AddField(
            model_name='connection',
            name='own_key_due_at',
            field=models.DateTimeField(db_index=True, editable=False, null=True),
        ),
        migrations.RunPython(key_set_at_creation, migrations.RunPython.noop),
    ]
