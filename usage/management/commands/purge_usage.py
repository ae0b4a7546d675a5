"""`manage.py purge_usage`: delete usage older than its retention (each server process also does it hourly)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from usage import services


class Command(BaseCommand):
    help = (
        "Delete call records older than USAGE_RETENTION_DAYS and hourly totals older than "
        "USAGE_HOURLY_RETENTION_DAYS (server processes also do this once an hour)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=10_000, help="Rows deleted per transaction.")

    def handle(self, *args, batch_size: int, **options):
        records, hours = services.purge(batch_size=max(batch_size, 1))
        self.stdout.write(
            f"Deleted {records} call records older than {settings.USAGE_RETENTION_DAYS} days and {hours} hourly "
            f"totals older than {settings.USAGE_HOURLY_RETENTION_DAYS} days."
        )
