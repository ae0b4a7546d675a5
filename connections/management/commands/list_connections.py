from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from connections.models import Connection, Rotation
from teams.models import Team

HEADERS = ("NAME", "PROVIDER", "CREDENTIALS", "ENDPOINTS", "LAST UPDATED", "KEY AGE", "DUE", "ROTATION")
# For cron and monitoring: `list_connections --overdue` exits with this when any key is overdue.
OVERDUE_EXIT_STATUS = 3


class Command(BaseCommand):
    help = (
        "List connections with masked credentials (or 'cannot be decrypted'), how many endpoints use each, and "
        f"where each key stands against its maximum age. With --overdue, only overdue keys, exiting with status "
        f"{OVERDUE_EXIT_STATUS} when there is any."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--overdue", action="store_true",
            help=f"List only connections whose key is overdue for rotation; exit {OVERDUE_EXIT_STATUS} if any.",
        )
        parser.add_argument("--team", metavar="NAME", help="List only the connections of this team.")

    def handle(self, *args, overdue: bool = False, team: str | None = None, **options) -> None:
        connections = connections_for_listing()
        if team is not None:
            if not Team.objects.filter(name=team).exists():
                raise CommandError(f"There is no team named '{team[:64]}'.")
            connections = connections.of_team(team)
        if overdue:
            connections = connections.rotation(Rotation.OVERDUE)
        rows = [table_row(connection) for connection in connections]
        if not rows:
            self.stdout.write("No connection is overdue for key rotation." if overdue else "No connections yet.")
            return
        widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS))]
        for row in [HEADERS, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if overdue:
            raise CommandError(f"{len(rows)} connection(s) overdue for key rotation.", returncode=OVERDUE_EXIT_STATUS)


def connections_for_listing():
    """One query however many connections and endpoints there are."""
    return Connection.objects.annotate(endpoint_count=Count("endpoints")).order_by("name")


def table_row(connection: Connection) -> tuple[str, ...]:
    updated = connection.secrets_updated_at
    due = connection.key_due_at
    age = connection.key_age_days
    return (
        connection.name,
        connection.provider,
        connection.credentials_display,
        str(connection.endpoint_count),
        f"{updated:%Y-%m-%d %H:%M} UTC" if updated else "-",
        f"{age}d" if age is not None else "-",
        f"{due:%Y-%m-%d}" if due else "-",
        connection.rotation_status,
    )
