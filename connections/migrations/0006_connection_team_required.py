# Every connection has a team now (0005 gave the existing ones the default team).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0005_each_connection_belongs_to_a_team'),
        ('teams', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='connection',
            name='team',
            field=models.ForeignKey(help_text="Only the team's members see, use and change this connection.", on_delete=django.db.models.deletion.PROTECT, related_name='connections', to='teams.team'),
        ),
    ]
