# Every write to these tables changes their write stamp (core/stamps.py), by which the lists remember their totals.

from django.db import migrations

from core.stamps import StampWrites


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0006_connection_team_required"),
        ("core", "0001_write_stamps"),
    ]

    operations = [
        StampWrites("connections_connection"),
    ]
