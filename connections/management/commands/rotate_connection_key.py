import getpass
import sys
from typing import TextIO

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.models import Connection
from connections.services import connection_rotate_key
from providers.catalogue import FIELD_LABELS, MAX_SECRET_BYTES

# Enough to let the registry say "longer than 16 KiB" without reading an endless stream into memory.
MAX_READ_CHARS = MAX_SECRET_BYTES + 1024
NOT_FROM_ARGV = (
    "unexpected arguments (not shown, in case one was a secret). The new value is never taken from the "
    "command line: pipe it on stdin, or type it at the prompt."
)


class Command(BaseCommand):
    help = (
        "Replace a connection's provider key. The new value is read from stdin when piped, else asked twice "
        "at a hidden prompt; never from arguments or the environment. Endpoints use it on their next call."
    )
    stealth_options = ("stdin",)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        report_error = parser.error

        def error(message: str) -> None:
            # argparse would echo stray arguments, and a stray argument here may well be the new key.
            report_error(NOT_FROM_ARGV if message.startswith("unrecognized arguments") else message)

        parser.error = error
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The connection's name.")
        parser.add_argument(
            "--field",
            help="The secret field to replace (such as api_key); needed only when the method has several.",
        )
        parser.add_argument("--user", help="Record the change as done by this user (default: system).")

    def handle(self, *args, name: str, field: str | None, user: str | None, **options) -> None:
        self.stdin: TextIO = options.get("stdin") or sys.stdin  # `stdin=` lets tests pipe a value in
        actor = find_actor(user)
        connection = find_connection(name)
        field = choose_field(connection, field)
        label = FIELD_LABELS.get(field, field)
        value = self.read_new_value(f"New {label} for '{connection.name}': ")
        changed_before = connection.secrets_updated_at
        try:
            connection = connection_rotate_key(connection=connection, field=field, value=value, actor=actor)
        except ValidationError as error:
            raise CommandError(f"Nothing changed: {validation_message(error)}") from None
        except Connection.DoesNotExist:
            raise CommandError(f"Connection '{connection.name}' was deleted meanwhile: nothing changed.") from None
        if connection.secrets_updated_at == changed_before:
            self.stdout.write(f"The {label} of '{connection.name}' already had that value; nothing changed.")
        else:
            mask = connection.masked_secrets().get(field, "")
            self.stdout.write(f"Rotated the {label} of connection '{connection.name}': now {mask}")
        self.stdout.write(endpoints_line(connection))

    def read_new_value(self, prompt: str) -> str:
        """From stdin when piped; on a terminal, a hidden prompt asked twice so a typo cannot slip in."""
        if self.stdin.isatty():
            value = getpass.getpass(prompt)
            if not value.strip():
                raise CommandError("Empty value: nothing changed.")
            if getpass.getpass("Repeat it: ") != value:
                raise CommandError("The two entries did not match: nothing changed.")
        else:
            value = self.stdin.read(MAX_READ_CHARS)
        if not value.strip():
            raise CommandError("Empty value on stdin: nothing changed. Pipe the new key in, e.g. `< keyfile`.")
        return value.strip()


def find_actor(username: str | None) -> AbstractBaseUser | None:
    if username is None:
        return None
    User = get_user_model()
    try:
        return User._default_manager.get_by_natural_key(username)
    except User.DoesNotExist:
        raise CommandError("No user has the username given with --user.") from None


def find_connection(name: str) -> Connection:
    try:
        return Connection.objects.get(name=name)
    except Connection.DoesNotExist:
        # The name is not repeated: someone who pasted the key where the name goes must not see it echoed.
        raise CommandError(
            "No connection has that name (names are lowercase); `manage.py list_connections` lists them."
        ) from None


def choose_field(connection: Connection, field: str | None) -> str:
    """The secret field to replace: the one given, or the method's only one."""
    method = connection.auth_method_spec
    names = [spec.name for spec in method.secret_fields] if method else []
    method_label = method.label if method else connection.auth_method
    if not names:
        raise CommandError(f"Connection '{connection.name}' ({method_label}) has no secret to rotate.")
    if field is None:
        if len(names) > 1:
            raise CommandError(
                f"Connection '{connection.name}' ({method_label}) has several secret fields: choose one with "
                f"--field ({', '.join(names)})."
            )
        return names[0]
    if field not in names:
        raise CommandError(
            f"Unknown --field for connection '{connection.name}' ({method_label}); expected: {', '.join(names)}."
        )
    return field


def validation_message(error: ValidationError) -> str:
    """The registry's messages (they name fields, never values), one line."""
    if hasattr(error, "error_dict"):
        return " ".join(f"{key}: {' '.join(messages)}" for key, messages in error.message_dict.items())
    return " ".join(error.messages)


def endpoints_line(connection: Connection) -> str:
    names = list(connection.endpoints.order_by("name").values_list("name", flat=True))
    if not names:
        return "No endpoint uses this connection yet."
    return f"Endpoints now using it ({len(names)}): {', '.join(names)}"
