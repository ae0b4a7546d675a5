from django.db.models import Count
from django.core.management.base import BaseCommand

from connections.models import Connection

HEADERS = ("NAME", "PROVIDER", "CREDENTIALS", "ENDPOINTS", "LAST UPDATED")


class Command(BaseCommand):
    help = "List connections with masked credentials (or 'cannot be decrypted') and how many endpoints use each."

    def handle(self, *args, **options) -> None:
        rows = [table_row(connection) for connection in connections_for_listing()]
        if not rows:
            self.stdout.write("No connections yet.")
            return
        widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS))]
        for row in [HEADERS, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def connections_for_listing():
    """One query however many connections and endpoints there are."""
    return Connection.objects.annotate(endpoint_count=Count("endpoints")).order_by("name")


def table_row(connection: Connection) -> tuple[str, ...]:
    updated = connection.secrets_updated_at
    return (
        connection.name,
        connection.provider,
        connection.credentials_display,
        str(connection.endpoint_count),
        f"{updated:%Y-%m-%d %H:%M} UTC" if updated else "-",
    )
