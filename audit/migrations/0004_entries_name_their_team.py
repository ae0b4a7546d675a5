# An entry names its subject's team, so only the team's members see it; entries about connections and
# endpoints made before teams belong to the default team, where those rows went (teams 0001).

from django.db import migrations, models


def entries_of_the_default_team(apps, schema_editor):
    AuditEntry = apps.get_model("audit", "AuditEntry")
    entries = AuditEntry.objects.filter(subject_type__in=["connection", "endpoint"], team_id__isnull=True)
    if entries.exists():
        Team = apps.get_model("teams", "Team")
        team, _ = Team.objects.get_or_create(name="default")
        entries.update(team_id=team.pk)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0003_rotation_policy_changed_action'),
        ('teams', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditentry',
            name='team_id',
            field=models.BigIntegerField(blank=True, db_index=True, help_text='The team of the subject at the time, if it had one.', null=True),
        ),
        migrations.RunPython(entries_of_the_default_team, migrations.RunPython.noop),
    ]
