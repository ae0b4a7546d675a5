# A change of a connection's rotation policy is an audit action of its own.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0002_entries_name_their_subject'),
    ]

    operations = [
        migrations.AlterField(
            model_name='auditentry',
            name='action',
            field=models.CharField(choices=[('created', 'Created'), ('updated', 'Updated'), ('key_rotated', 'Key rotated'), ('deleted', 'Deleted'), ('encryption_key_rotated', 'Encryption key rotated'), ('token_created', 'API token created'), ('token_revoked', 'API token revoked'), ('rotation_policy_changed', 'Rotation policy changed')], max_length=32),
        ),
    ]
