"""Call limits a row can carry (an API token, an endpoint): requests per minute and a token budget per day or
per month, and the fixed windows they are counted in (UTC, so every process and machine agrees)."""

import calendar
from datetime import UTC, datetime

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MAX_REQUESTS_PER_MINUTE = 1_000_000
MAX_TOKEN_BUDGET = 10**15


class BudgetPeriod(models.TextChoices):
    DAY = "day", "per day"
    MONTH = "month", "per month"


MINUTE = "minute"


class CallLimits(models.Model):
    """Requests per minute and tokens per day or month; empty means no limit. The gateway counts them."""

    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUESTS_PER_MINUTE)],
        help_text="Calls allowed per minute (UTC clock minutes); empty: no limit.",
    )
    token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_TOKEN_BUDGET)],
        help_text="Tokens (prompt and completion, as the provider reports them) allowed per budget period; "
                  "empty: no budget.",
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)

    limit_fields = ("requests_per_minute", "token_budget", "budget_period")

    class Meta:
        abstract = True

    @property
    def limits_display(self) -> str:
        """One line for lists: `60/min · 1,000,000 tokens per month`, or empty."""
        return limits_line(self.requests_per_minute, self.token_budget, self.budget_period)


def limits_line(requests_per_minute: int | None, token_budget: int | None, budget_period: str) -> str:
    """A row's limits on one line, from its columns (lists read them without the model)."""
    parts = []
    if requests_per_minute:
        parts.append(f"{requests_per_minute:,}/min")
    if token_budget:
        parts.append(f"{token_budget:,} tokens {BudgetPeriod(budget_period).label}")
    return " · ".join(parts)


def window(period: str, now: datetime) -> tuple[int, int]:
    """The window of `period` (minute, day, month) holding `now`: its start and end, in epoch seconds (UTC)."""
    now = now.astimezone(UTC)
    if period == MINUTE:
        start = int(now.timestamp()) // 60 * 60
        return start, start + 60
    if period == BudgetPeriod.DAY:
        start = int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp())
        return start, start + 86400
    if period == BudgetPeriod.MONTH:
        first = datetime(now.year, now.month, 1, tzinfo=UTC)
        days = calendar.monthrange(now.year, now.month)[1]
        return int(first.timestamp()), int(first.timestamp()) + days * 86400
    raise ValueError(f"Unknown period {period!r}")
