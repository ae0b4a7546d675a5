from django.db import models


class LimitCounter(models.Model):
    """What the current window of one limit (a token's or an endpoint's) holds, in the database so that every
    server process and machine counts together: a rate's slots taken (each admitted call used one; a process
    may still hold some), a budget's tokens.

    One row per subject and period, reset in place when a new window starts: the table stays as small as the
    number of limited tokens and endpoints.
    """

    subject = models.CharField(max_length=40, help_text="`token:<id>` or `endpoint:<id>`.")
    period = models.CharField(max_length=8, help_text="minute, day or month.")
    started = models.BigIntegerField(help_text="The window's start, in seconds since the epoch (UTC).")
    requests = models.BigIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject", "period"], name="one_counter_per_limit")]

    def __str__(self) -> str:
        return f"{self.subject} {self.period} from {self.started}: {self.requests} calls, {self.tokens} tokens"
