# Every endpoint has a team now (0008 gave the existing ones the default team).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('endpoints', '0008_each_endpoint_belongs_to_a_team'),
        ('teams', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='endpoint',
            name='team',
            field=models.ForeignKey(help_text="Only the team's members see, change and call this endpoint; it uses only the team's connections.", on_delete=django.db.models.deletion.PROTECT, related_name='endpoints', to='teams.team'),
        ),
    ]
