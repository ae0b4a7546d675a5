# Every write to the destinations changes their write stamp (core/stamps.py): a list of endpoints remembered with
# the stamps of what it reads (core.rows.Pages) follows a destination's every change, a cooldown's too.

from django.db import migrations

from core.stamps import StampWrites


class Migration(migrations.Migration):

    dependencies = [
        ("endpoints", "0010_write_stamps"),
    ]

    operations = [
        StampWrites("endpoints_destination"),
    ]
