"""What the gateway's calls were: one row per call for a while, and hourly totals for longer.

Rows name endpoints, connections, tokens and users by id, not by foreign key: a call's record outlives what
it names (a deleted endpoint's traffic still counts), costs no constraint check on the write path, and the
usage app sits below the apps whose traffic it counts (settings.USAGE_SUBJECTS maps the ids to their models
for the pages). Nothing here ever holds a prompt, a completion, a key or a token.
"""

from django.db import models

# Upper bounds (milliseconds) of the latency buckets the hourly totals count calls in; the last is open.
LATENCY_BUCKETS_MS: tuple[int, ...] = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
LATENCY_FIELDS: tuple[str, ...] = tuple(f"latency_le_{bound}" for bound in LATENCY_BUCKETS_MS) + ("latency_over",)
# Totals the writer adds up per hour and destination (the latency buckets too).
SUM_FIELDS: tuple[str, ...] = (
    "calls", "errors", "prompt_tokens", "completion_tokens", "cost_micros", "latency_ms_sum", *LATENCY_FIELDS,
)
# Besides the period's start (`hour` or `day`), what one row of totals is for.
KEY_FIELDS: tuple[str, ...] = ("endpoint_id", "connection_id", "token_id", "model")


class UsageRecord(models.Model):
    """One gateway call: when, which endpoint and destination, who, how it ended, how long, how many tokens."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_index=True, help_text="When the call arrived.")
    endpoint_id = models.IntegerField(null=True, blank=True)
    connection_id = models.IntegerField(null=True, blank=True)
    token_id = models.IntegerField(null=True, blank=True)
    user_id = models.IntegerField(null=True, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="The provider's model id called.")
    status = models.SmallIntegerField(help_text="The HTTP status the caller got (200 for a stream once started).")
    error = models.CharField(max_length=64, blank=True, help_text="The error's code, such as upstream_timeout.")
    attempts = models.SmallIntegerField(default=0, help_text="Provider requests sent, retries included.")
    stream = models.BooleanField(default=False)
    latency_ms = models.IntegerField(help_text="From arrival to the last byte sent.")
    ttfb_ms = models.IntegerField(null=True, blank=True, help_text="Streams: from arrival to the provider's first chunk.")
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    cost_micros = models.BigIntegerField(null=True, blank=True, help_text="Millionths of the price's currency.")

    class Meta:
        ordering = ["-at", "-id"]
        permissions = [("view_metrics", "Can read the Prometheus metrics")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.model or '-'} {self.status}"

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class Totals(models.Model):
    """The calls of one period to one destination (endpoint, connection, model) by one token, added up.

    Ids are 0 where a call had none (a refused token, an unknown endpoint), so the key is unique as written.
    Latency is kept as counts per bucket (LATENCY_BUCKETS_MS), from which percentiles are estimated.
    """

    id = models.BigAutoField(primary_key=True)
    endpoint_id = models.IntegerField(default=0)
    connection_id = models.IntegerField(default=0)
    token_id = models.IntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    last_at = models.DateTimeField(null=True, help_text="When the latest of these calls arrived.")
    calls = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_le_50 = models.IntegerField(default=0)
    latency_le_100 = models.IntegerField(default=0)
    latency_le_250 = models.IntegerField(default=0)
    latency_le_500 = models.IntegerField(default=0)
    latency_le_1000 = models.IntegerField(default=0)
    latency_le_2500 = models.IntegerField(default=0)
    latency_le_5000 = models.IntegerField(default=0)
    latency_le_10000 = models.IntegerField(default=0)
    latency_le_30000 = models.IntegerField(default=0)
    latency_le_60000 = models.IntegerField(default=0)
    latency_over = models.IntegerField(default=0)

    PERIOD = ""  # the name of the field holding the period's start

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{getattr(self, self.PERIOD):%Y-%m-%d %H:00} {self.model or '-'} {self.calls} calls"


class UsageHour(Totals):
    """An hour's totals: the Usage tab's 24 hours and 7 days, the API by hour, the lists' last 24 hours."""

    hour = models.DateTimeField()

    PERIOD = "hour"

    class Meta:
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(fields=("hour", *KEY_FIELDS), name="usage_hour_key")]
        indexes = [
            models.Index(fields=["endpoint_id", "hour"], name="usage_hour_endpoint"),
            models.Index(fields=["connection_id", "hour"], name="usage_hour_connection"),
            models.Index(fields=["token_id", "hour"], name="usage_hour_token"),
        ]


class UsageHourOverall(Totals):
    """An hour's totals over every destination and token (its key fields are always 0 and ""): the charts
    of the unfiltered Usage tab read one row per hour instead of one per destination and token."""

    hour = models.DateTimeField()

    PERIOD = "hour"

    class Meta:
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(fields=("hour", *KEY_FIELDS), name="usage_hour_overall_key")]


class UsageDay(Totals):
    """A day's totals (UTC), written alongside the hour's: the Usage tab's 30 days and the API by day read
    24 times fewer rows."""

    day = models.DateTimeField()

    PERIOD = "day"

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=("day", *KEY_FIELDS), name="usage_day_key")]
        indexes = [
            models.Index(fields=["endpoint_id", "day"], name="usage_day_endpoint"),
            models.Index(fields=["connection_id", "day"], name="usage_day_connection"),
            models.Index(fields=["token_id", "day"], name="usage_day_token"),
        ]


class Price(models.Model):
    """What a destination (a connection's model) costs per million input and output tokens; optional."""

    # A foreign key by name (no import): the price goes with its connection.
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200, help_text="The provider's model id, as the endpoint names it.")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "model"], name="usage_price_destination")]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_per_million} in / {self.output_per_million} out per million tokens"

    def cost_micros(self, prompt_tokens: int | None, completion_tokens: int | None) -> int:
        """Millionths of the currency: tokens × price per million tokens."""
        return round((prompt_tokens or 0) * self.input_per_million + (completion_tokens or 0) * self.output_per_million)
