from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tokens.services import token_create


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Create an API token for a user and print it (only the token and a newline); it is shown once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--expires-days", type=positive_int, default=None, metavar="N",
                            help="Expire the token after N days (a whole number, at least 1).")

    def handle(self, *args, username: str, expires_days: int | None, **options):
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"No user named '{username}'.") from None
        if not user.is_active:
            raise CommandError(f"User '{username}' is inactive: a token for them would not work.")
        _, plaintext = token_create(user=user, actor=None, expires_days=expires_days)
        self.stdout.write(plaintext)
