import argparse

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.limits import BudgetPeriod
from tokens.models import EXPIRES_DAYS_MAX, EXPIRES_DAYS_MIN, ApiToken, Scope
from tokens.services import token_create

EXPIRES_DAYS_RULE = f"a whole number of days from {EXPIRES_DAYS_MIN} to {EXPIRES_DAYS_MAX}"


def expires_days(value: str) -> int:
    """The Tokens page's rule (tokens/models.py), said in argparse's one-line error."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(EXPIRES_DAYS_RULE) from None
    if not EXPIRES_DAYS_MIN <= days <= EXPIRES_DAYS_MAX:
        raise argparse.ArgumentTypeError(EXPIRES_DAYS_RULE)
    return days


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number from 1") from None
    if number < 1:
        raise argparse.ArgumentTypeError("a whole number from 1")
    return number


class Command(BaseCommand):
    help = "Create an API token for a user and print it (only the token and a newline); it is shown once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--expires-days", type=expires_days, default=None, metavar="N",
                            help=f"Expire the token after N days ({EXPIRES_DAYS_RULE}).")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.FULL,
                            help="full: API and gateway (default); read_only: API reads only; gateway: gateway only.")
        parser.add_argument("--endpoint", action="append", default=[], metavar="NAME", dest="endpoints",
                            help="Limit the token to this endpoint on the gateway (repeat for several).")
        parser.add_argument("--requests-per-minute", type=positive, default=None, metavar="N",
                            help="Allow at most N gateway calls per minute.")
        parser.add_argument("--token-budget", type=positive, default=None, metavar="N",
                            help="Allow at most N tokens (as providers report them) per budget period.")
        parser.add_argument("--budget-period", choices=BudgetPeriod.values, default=BudgetPeriod.MONTH,
                            help="The token budget's period (default: month).")

    def handle(self, *args, username: str, expires_days: int | None, scope: str = Scope.FULL,
               endpoints: list[str] = (), requests_per_minute: int | None = None, token_budget: int | None = None,
               budget_period: str = BudgetPeriod.MONTH, **options):
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"No user named '{username}'.") from None
        if not user.is_active:
            raise CommandError(f"User '{username}' is inactive: a token for them would not work.")
        endpoint_model = ApiToken._meta.get_field("endpoints").related_model
        found = list(endpoint_model.objects.filter(name__in=endpoints))
        missing = sorted(set(endpoints) - {endpoint.name for endpoint in found})
        if missing:
            raise CommandError(f"No endpoint named {', '.join(repr(name) for name in missing)}.")
        try:
            _, plaintext = token_create(
                user=user, actor=None, expires_days=expires_days, scope=scope, endpoints=found,
                requests_per_minute=requests_per_minute, token_budget=token_budget, budget_period=budget_period,
            )
        except ValidationError as error:
            raise CommandError("; ".join(f"{field}: {' '.join(messages)}"
                                         for field, messages in error.message_dict.items())) from None
        self.stdout.write(plaintext)
