# Every write to the users changes their write stamp (core/stamps.py): the connections list shows who created and
# last changed each connection, and a page remembered with the stamps of what it reads (core.rows.Pages) follows
# a renamed user too.

from django.conf import settings
from django.db import migrations

from core.stamps import StampWrites


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0007_write_stamps"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        StampWrites("auth_user"),
    ]
