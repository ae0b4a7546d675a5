# Teams, and the default team: it holds every connection and endpoint that existed before teams, and every
# user who is not a superuser joins it, so an upgrade locks nobody out of what they saw before.

import core.names
from django.conf import settings
from django.db import migrations, models


def default_team_for_everyone(apps, schema_editor):
    Team = apps.get_model("teams", "Team")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    team, _ = Team.objects.get_or_create(name="default", defaults={
        "description": "Everything made before teams existed, and its users."})
    team.members.add(*User.objects.filter(is_superuser=False))


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Team',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text="1–64 lowercase letters, digits, '-' and '_', starting with a letter.", max_length=64, unique=True, validators=[core.names.validate_name])),
                ('description', models.TextField(blank=True, max_length=2000)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('members', models.ManyToManyField(blank=True, related_name='teams', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.RunPython(default_team_for_everyone, migrations.RunPython.noop),
    ]
