import time

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections import rotation
from connections.management.commands.rotate_connection_key import find_actor

BAR_WIDTH = 30
PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines when the output is not a terminal


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first FIELD_ENCRYPTION_KEY while the servers keep serving. "
        "First restart every server process with FIELD_ENCRYPTION_KEY=new,old; see "
        "docs/encryption-and-rotation.md. --check gates removing the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--check",
            action="store_true",
            help="Count values under the first key, an older key and none; exit 1 unless all use the first key.",
        )
        mode.add_argument("--dry-run", action="store_true", help="Report what would change and change nothing.")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=rotation.DEFAULT_BATCH_SIZE,
            help=f"Rows per transaction (default {rotation.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument("--user", help="Record the rotation as done by this user (default: system).")

    def handle(self, *args, check: bool, dry_run: bool, batch_size: int, user: str | None, **options) -> None:
        if check:
            self.check_keys(batch_size)
        elif dry_run:
            self.dry_run(batch_size)
        else:
            self.rotate(batch_size, find_actor(user), verbosity=options["verbosity"])

    def check_keys(self, batch_size: int) -> None:
        census = rotation.take_census(batch_size=batch_size)
        self.write_census(census)
        if census.undecryptable:
            raise CommandError(
                f"{len(census.undecryptable)} connection(s) cannot be decrypted with any configured key: "
                f"{', '.join(census.undecryptable)}. Keep every key you have until they are re-entered."
            )
        if census.older:
            raise CommandError(
                f"{census.older} connection(s) still use an older key: run `manage.py rotate_encryption_key` "
                "and keep the older keys until this check passes."
            )
        self.stdout.write(
            f"All {census.total} connection(s) are encrypted under the first key: the older keys can be removed "
            "from FIELD_ENCRYPTION_KEY once every server process has restarted with the new list."
        )

    def dry_run(self, batch_size: int) -> None:
        census = rotation.take_census(batch_size=batch_size)
        self.write_census(census)
        if census.undecryptable:
            raise CommandError(str(rotation.UndecryptableValues(census.undecryptable)))
        self.stdout.write(
            f"Would re-encrypt {census.older} of {census.total} connection(s) under the first key. "
            "Dry run: nothing was changed."
        )

    def rotate(self, batch_size: int, actor: AbstractBaseUser | None, *, verbosity: int) -> None:
        if len(settings.FIELD_ENCRYPTION_KEY) == 1:
            self.nothing_to_rotate_to(batch_size)
            return
        reporter = ProgressReporter(self, verbose=verbosity >= 2)
        try:
            result = rotation.rotate_encryption_key(batch_size=batch_size, actor=actor, progress=reporter)
        except rotation.UndecryptableValues as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            reporter.finish()
            raise CommandError(
                f"Interrupted after re-encrypting {reporter.rewritten} connection(s). Every value still decrypts "
                "with the configured keys; run the command again to finish.",
                returncode=130,
            ) from None
        reporter.finish()
        self.stdout.write(
            f"Re-encrypted {result.rewritten} of {result.checked} connection(s) under the first key "
            f"({result.already_first} already were"
            + (f", {result.retried} retried after a concurrent edit" if result.retried else "")
            + (f", {result.deleted_meanwhile} deleted meanwhile" if result.deleted_meanwhile else "")
            + ")."
        )
        if result.undecryptable:
            raise CommandError(
                f"{len(result.undecryptable)} connection(s) became undecryptable during the run: "
                f"{', '.join(result.undecryptable)}. Does every server process use the same key list?"
            )
        if result.unfinished:
            raise CommandError(
                f"{len(result.unfinished)} connection(s) kept changing and were not re-encrypted: "
                f"{', '.join(result.unfinished)}. Run the command again."
            )
        self.stdout.write("Run `manage.py rotate_encryption_key --check` to confirm before removing the old key.")

    def nothing_to_rotate_to(self, batch_size: int) -> None:
        """One configured key: the usual slip is a new key added to .env without restarting, or not added."""
        census = rotation.take_census(batch_size=batch_size)
        if census.undecryptable:
            raise CommandError(str(rotation.UndecryptableValues(census.undecryptable)))
        self.stdout.write(
            f"FIELD_ENCRYPTION_KEY holds a single key and all {census.total} connection(s) are under it: nothing "
            "to do. To rotate, put a new key in front of it (FIELD_ENCRYPTION_KEY=new,old), restart every server "
            "process, then run this again."
        )

    def write_census(self, census: rotation.KeyCensus) -> None:
        self.stdout.write(f"Under the first key:  {census.first}")
        self.stdout.write(f"Under an older key:   {census.older}")
        self.stdout.write(f"Cannot be decrypted:  {len(census.undecryptable)}")


class ProgressReporter:
    """A bar redrawn in place on a terminal; elsewhere (logs, pipes) a plain count every few seconds."""

    def __init__(self, command: BaseCommand, *, verbose: bool):
        self.out = command.stdout
        self.on_terminal = command.stdout.isatty()
        self.verbose = verbose
        self.last_line_at = time.monotonic()
        self.drawn = False
        self.rewritten = 0

    def __call__(self, state: rotation.RotationProgress) -> None:
        self.rewritten = state.rewritten
        total = max(state.total, state.checked)
        if self.on_terminal:
            filled = BAR_WIDTH * state.checked // total if total else BAR_WIDTH
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.out.write(f"\r[{bar}] {state.checked}/{total} checked, {state.rewritten} re-encrypted", ending="")
            self.out.flush()
            self.drawn = True
        elif self.verbose or time.monotonic() - self.last_line_at >= PLAIN_PROGRESS_EVERY:
            self.out.write(f"Checked {state.checked} of {total}, re-encrypted {state.rewritten}")
            self.out.flush()
            self.last_line_at = time.monotonic()

    def finish(self) -> None:
        if self.drawn:
            self.out.write("")
            self.drawn = False


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value
