"""Requests per minute and token budgets of gateway calls, per token and per endpoint, counted in the database.

Each limited call is one statement before the provider is called: it adds the call to the current window of
each limit that applies (an upsert that starts a new window in place) and reads back what the windows hold,
so every process and machine sees the same counts. A call over a limit is answered 429 with Retry-After
(the seconds until the window that refused it ends). Tokens are added after the provider answered, from
the usage it reports; a call that would cross a budget is still served, the next one is refused.
Calls with no limit cost nothing here: the limits come with the token and endpoint rows already read.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connection as database
from django.db import connections

from core.limits import MINUTE, window
from providers import errors
from providers.errors import GatewayError

from .models import LimitCounter

REQUESTS, TOKENS = "requests", "tokens"


@dataclass(frozen=True)
class Limit:
    subject: str  # `token:<id>` or `endpoint:<id>`
    holder: str  # who carries it, as the error message says it: "this token", "endpoint 'chat'"
    period: str  # minute, day, month
    allowed: int
    counts: str  # REQUESTS or TOKENS


@dataclass(frozen=True)
class Admission:
    """The windows a call was counted in, for adding its tokens once the provider answered."""

    windows: tuple[tuple[str, str, int], ...]  # (subject, period, window start) of each budget

    @property
    def counts_tokens(self) -> bool:
        return bool(self.windows)


NOTHING_TO_COUNT = Admission(())


def limits_of(holder, subject: str, name: str) -> list[Limit]:
    """The limits a token (a Caller) or an endpoint carries."""
    found = []
    if holder.requests_per_minute:
        found.append(Limit(subject, name, MINUTE, holder.requests_per_minute, REQUESTS))
    if holder.token_budget:
        found.append(Limit(subject, name, holder.budget_period, holder.token_budget, TOKENS))
    return found


def admit(limits: list[Limit], now: datetime) -> Admission:
    """Count the call against each limit; raise a 429 GatewayError when one of them is exhausted."""
    if not limits:
        return NOTHING_TO_COUNT
    windows = {(limit.subject, limit.period): window(limit.period, now) for limit in limits}
    # In one order for every call (rows are locked as listed), so two calls never wait on each other in a cycle.
    counted = count_call(sorted((subject, period, start) for (subject, period), (start, _) in windows.items()))
    refusals = []
    for limit in limits:
        requests, tokens = counted[(limit.subject, limit.period)]
        start, end = windows[(limit.subject, limit.period)]
        if (limit.counts == REQUESTS and requests > limit.allowed) or (limit.counts == TOKENS and tokens >= limit.allowed):
            refusals.append((limit, max(1, math.ceil(end - now.timestamp()))))
    if refusals:
        raise refusal(refusals)
    return Admission(tuple((l.subject, l.period, windows[(l.subject, l.period)][0]) for l in limits if l.counts == TOKENS))


def refusal(refusals: list[tuple[Limit, int]]) -> GatewayError:
    """A budget outranks a rate (waiting a minute will not help); Retry-After is when every refusal has ended."""
    budgets = [(limit, wait) for limit, wait in refusals if limit.counts == TOKENS]
    limit, _ = (budgets or refusals)[0]
    wait = max(wait for _, wait in refusals)
    if limit.counts == TOKENS:
        message = (f"The token budget of {limit.holder} ({limit.allowed:,} tokens per {limit.period}) is spent; "
                   f"it renews in {wait} seconds.")
        code = "budget_exceeded"
    else:
        message = (f"Rate limit of {limit.holder} reached: {limit.allowed:,} requests per minute. "
                   f"Retry in {wait} seconds.")
        code = "rate_limit_exceeded"
    return GatewayError(429, errors.RATE_LIMIT, code, message, retry_after=str(wait))


def count_call(windows: list[tuple[str, str, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Add one call to each (subject, period) in the window starting at `start`: a new window resets the row.
    Returns what each window now holds: (requests, tokens)."""
    statement = upsert_statement(database.alias, len(windows))
    params = [value for subject, period, start in windows for value in (subject, period, start)]
    with database.cursor() as cursor:
        cursor.execute(statement, params)
        return {(subject, period): (requests, tokens) for subject, period, requests, tokens in cursor.fetchall()}


def add_tokens(admission: Admission, tokens: int) -> None:
    """Add a call's tokens to the windows it was counted in (a window that has ended since is left alone)."""
    if not admission.counts_tokens or tokens <= 0:
        return
    params = [tokens, *(value for window_ in admission.windows for value in window_)]
    with database.cursor() as cursor:
        cursor.execute(add_tokens_statement(database.alias, len(admission.windows)), params)


@cache
def add_tokens_statement(alias: str, windows: int) -> str:
    """One UPDATE for every budget window of a call (the token's and the endpoint's): one write, not two."""
    q = connections[alias].ops.quote_name
    one = f"({q('subject')} = %s AND {q('period')} = %s AND {q('started')} = %s)"
    return (f"UPDATE {q(LimitCounter._meta.db_table)} SET {q('tokens')} = {q('tokens')} + %s "
            f"WHERE {' OR '.join([one] * windows)}")


@cache
def upsert_statement(alias: str, rows: int) -> str:
    """INSERT … ON CONFLICT DO UPDATE … RETURNING, as SQLite (3.35+) and PostgreSQL both take it.

    Within one statement every assignment reads the row as it was, so a newer window resets the counts and
    an older one (a process whose clock lags) adds to the current window instead of resetting it.
    """
    q = connections[alias].ops.quote_name
    table = q(LimitCounter._meta.db_table)
    subject, period, started, requests, tokens = (q(c) for c in ("subject", "period", "started", "requests", "tokens"))
    newer = f"excluded.{started} > {table}.{started}"
    values = ", ".join(["(%s, %s, %s, 1, 0)"] * rows)
    return (
        f"INSERT INTO {table} ({subject}, {period}, {started}, {requests}, {tokens}) VALUES {values} "
        f"ON CONFLICT ({subject}, {period}) DO UPDATE SET "
        f"{requests} = CASE WHEN {newer} THEN 1 ELSE {table}.{requests} + 1 END, "
        f"{tokens} = CASE WHEN {newer} THEN 0 ELSE {table}.{tokens} END, "
        f"{started} = CASE WHEN {newer} THEN excluded.{started} ELSE {table}.{started} END "
        f"RETURNING {subject}, {period}, {requests}, {tokens}"
    )
