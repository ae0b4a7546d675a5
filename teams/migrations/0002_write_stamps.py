# Every write to these tables changes their write stamp (core/stamps.py), by which the lists remember their totals.

from django.db import migrations

from core.stamps import StampWrites


class Migration(migrations.Migration):

    dependencies = [
        ("teams", "0001_initial"),
        ("core", "0001_write_stamps"),
    ]

    operations = [
        StampWrites("teams_team"),
        StampWrites("teams_team_members"),
    ]
