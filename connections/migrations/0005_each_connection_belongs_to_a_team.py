# Each connection belongs to a team: those that exist go to the default team (made by teams 0001). The column
# becomes required in the next migration (PostgreSQL will not alter a table with rows just updated in the
# same transaction).

import django.db.models.deletion
from django.db import migrations, models


def to_the_default_team(apps, schema_editor):
    Team = apps.get_model("teams", "Team")
    model = apps.get_model("connections", "connection")
    if model.objects.filter(team__isnull=True).exists():
        team, _ = Team.objects.get_or_create(name="default")
        model.objects.filter(team__isnull=True).update(team=team)


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0004_environment_of_each_connection'),
        ('teams', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='team',
            field=models.ForeignKey(help_text="Only the team's members see, use and change this connection.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='connections', to='teams.team'),
        ),
        migrations.RunPython(to_the_default_team, migrations.RunPython.noop),
    ]
