"""Requests per minute and token budgets of gateway calls, per token and per endpoint, counted in the database.

Admission: a call is checked against each limit that applies (the token's and the endpoint's) before the
provider is called. The counts live in the database, one row per limit and period (an upsert that starts a
new window in place), so every process and machine counts together; each process keeps what it learnt of
them (`HELD`), so that a call far from its limits needs no statement at all:

- A rate is counted in slots: a statement adds to the window's count the slots it takes, and reads back the
  count; a process takes one slot per call until it knows the window holds few calls, then takes a block
  (up to BLOCK_SLOTS held, and at most an eighth of what was left) and admits its next calls from it.
  Only slots granted within the limit are used, so across every process no more calls than the limit are
  admitted in a window. Slots a process holds and does not use are lost at the window's end; a process may
  be refused while another one still holds some (at most BLOCK_SLOTS each, and few near the limit).
- A budget is checked against the window's tokens as the process last read them plus the tokens its own
  calls spent since; that reading is renewed (by a statement) once it is LIMITS_FLUSH_SECONDS old.

A call over a limit is answered 429 with Retry-After (the seconds until the window that refused it ends);
counts only grow within a window, so a process that knows a limit spent refuses at once, without a
statement. Calls with no limit cost nothing here: the limits come with the token and endpoint rows already
read.

Tokens are counted off the call's path. Once the provider has answered, the call adds the tokens it reports
to the process's pending additions (`PENDING_TOKENS`: in memory, one sum per budget window, no I/O). They
reach the database whichever way comes first: the process's next admission statement of the same window
adds them (so a process counts its own calls' tokens exactly), or the process's writer thread writes all
that is pending, summed, in one transaction, LIMITS_FLUSH_SECONDS after the first of them waited. At shutdown
(the server's lifespan, or the interpreter's exit) what is pending is written before the process ends.

How far a budget can be overshot: the call that crosses it is served (its tokens are known only once it has
been answered), and so are the calls already admitted while it ran; the process that served it refuses its
next call. Another process learns of the crossing at most twice LIMITS_FLUSH_SECONDS (plus the moment the
write takes) after that call's answer: the write, then its own next reading. Until then it still admits
calls: a budget is overshot by at most the tokens of the calls admitted, in every process, in that time.
A process that crashes (SIGKILL, power loss) loses the tokens of at most about one interval of its calls, as
usage/recorder.py loses calls. While the database cannot be written to, the additions stay pending (one sum
per window: memory stays bounded), a line is logged and the writer tries again every RETRY_SECONDS; a call
never waits for them and never fails on them. Tokens of a window that has ended before they are written are
dropped: an ended window is left alone.
"""

import atexit
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db import connection as database
from django.db import connections

from core.limits import MINUTE, window
from providers import errors
from providers.errors import GatewayError

from .models import LimitCounter

REQUESTS, TOKENS = "requests", "tokens"
RETRY_SECONDS = 1.0  # between writes while the database refuses them
ROWS_PER_STATEMENT = 200
BLOCK_SLOTS = 32  # the most rate slots a process holds

logger = logging.getLogger("gateway")

Window = tuple[str, str, int]  # (subject, period, window start)


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

    windows: tuple[Window, ...]  # of each budget

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


def admit(limits: list[Limit], now: datetime, held: "Held | None" = None) -> Admission:
    """Count the call against each limit; raise a 429 GatewayError when one of them is exhausted.

    From what this process holds (`held`, the process's `HELD` unless a test stands for another process) when
    it can; otherwise with one statement that reads and updates every window of the call.
    """
    if not limits:
        return NOTHING_TO_COUNT
    held = HELD if held is None else held
    starts = {(limit.subject, limit.period): window(limit.period, now) for limit in limits}
    outcome = held.admit(limits, starts)
    if outcome is None:
        asks = held.asks(limits, starts)
        outcome = held.learn(limits, starts, asks, count_call(asks))
    if outcome:
        raise refusal([(limit, max(1, math.ceil(end - now.timestamp()))) for limit, end in outcome])
    return Admission(tuple((l.subject, l.period, starts[(l.subject, l.period)][0]) for l in limits
                           if l.counts == TOKENS))


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


def count_call(asks: list[tuple[Window, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Add to each window the slots asked for (a new window resets the row), and the tokens this process's calls
    added to it since they were last written. Returns what each window now holds: (requests, tokens)."""
    windows = [key for key, _ in asks]
    taken = PENDING_TOKENS.take(windows)
    params = [value for key, slots in asks for value in (*key, slots, taken.get(key, 0))]
    try:
        with database.cursor() as cursor:
            cursor.execute(counter_statement(database.alias, len(asks), returning=True), params)
            rows = cursor.fetchall()
    except BaseException:
        PENDING_TOKENS.put_back(taken)  # the writer writes them instead
        raise
    return {(subject, period): (requests, tokens) for subject, period, requests, tokens in rows}


def add_tokens(admission: Admission, tokens: int) -> None:
    """Add a call's tokens to the budget windows it was counted in: in memory, written off the call's path."""
    if admission.counts_tokens and tokens > 0:
        PENDING_TOKENS.add(admission.windows, tokens)
        HELD.spent(admission.windows, tokens)


@cache
def counter_statement(alias: str, rows: int, returning: bool) -> str:
    """INSERT … ON CONFLICT DO UPDATE (… RETURNING), as SQLite (3.35+) and PostgreSQL both take it: each row adds
    calls and tokens to one window of one limit.

    Within one statement every assignment reads the row as it was, so a newer window resets the counts, and an
    older one (a process whose clock lags, or tokens written after their window ended) adds its calls to the
    current window but not its tokens: those belong to a window that has ended.
    """
    q = connections[alias].ops.quote_name
    subject, period, started, requests, tokens = (q(c) for c in ("subject", "period", "started", "requests", "tokens"))
    newer, same = f"excluded.{started} > c.{started}", f"excluded.{started} = c.{started}"
    return (
        f"INSERT INTO {q(LimitCounter._meta.db_table)} AS c ({subject}, {period}, {started}, {requests}, {tokens}) "
        f"VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * rows)} ON CONFLICT ({subject}, {period}) DO UPDATE SET "
        f"{requests} = CASE WHEN {newer} THEN excluded.{requests} ELSE c.{requests} + excluded.{requests} END, "
        f"{tokens} = CASE WHEN {newer} THEN excluded.{tokens} WHEN {same} THEN c.{tokens} + excluded.{tokens} "
        f"ELSE c.{tokens} END, {started} = CASE WHEN {newer} THEN excluded.{started} ELSE c.{started} END"
        + (f" RETURNING {subject}, {period}, {requests}, {tokens}" if returning else "")
    )


def write_tokens(sums: dict[Window, int]) -> None:
    """The sums in one transaction, a statement per ROWS_PER_STATEMENT windows in the admissions' order (so a
    write and an admission never wait on each other in a cycle). Of two windows of one limit only the newer is
    written: the older has ended."""
    newest: dict[tuple[str, str], tuple[int, int]] = {}
    for (subject, period, start), tokens in sums.items():
        if (subject, period) not in newest or start > newest[(subject, period)][0]:
            newest[(subject, period)] = (start, tokens)
    rows = sorted((subject, period, start, 0, tokens) for (subject, period), (start, tokens) in newest.items())
    with transaction.atomic(using=database.alias), database.cursor() as cursor:
        for first in range(0, len(rows), ROWS_PER_STATEMENT):
            batch = rows[first:first + ROWS_PER_STATEMENT]
            cursor.execute(counter_statement(database.alias, len(batch), returning=False),
                           [value for row in batch for value in row])


class PendingTokens:
    """The tokens calls used that are not written yet, one sum per budget window, and the process's thread that
    writes them (`write` does the database part)."""

    def __init__(self, write=write_tokens):
        self.write = write
        self.sums: dict[Window, int] = {}
        self.lock = threading.Lock()  # held for a dictionary's update, never across I/O
        self.flush_lock = threading.Lock()
        self.wake = threading.Event()  # set when the first sum of an interval waits
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    # --- The call's side: sums in memory ------------------------------------------------------------------

    def add(self, windows: tuple[Window, ...], tokens: int) -> None:
        if self.pid != os.getpid():
            self.forked()
        with self.lock:
            first = not self.sums
            for key in windows:
                self.sums[key] = self.sums.get(key, 0) + tokens
        if first:
            self.wake.set()
        if self.thread is None:
            self.start()

    def take(self, windows: list[Window]) -> dict[Window, int]:
        """What waits for these windows, for an admission's statement to add (`put_back` if it fails)."""
        if not self.sums:  # read without the lock: a sum added this instant is written by the writer instead
            return {}
        with self.lock:
            return {key: self.sums.pop(key) for key in windows if key in self.sums}

    def put_back(self, taken: dict[Window, int]) -> None:
        if not taken:
            return
        with self.lock:
            for key, tokens in taken.items():
                self.sums[key] = self.sums.get(key, 0) + tokens
        self.wake.set()

    # --- The writer's side ------------------------------------------------------------------------------

    def forked(self) -> None:
        """In a forked child: the parent's sums and thread are the parent's."""
        self.pid, self.sums, self.thread = os.getpid(), {}, None
        self.lock, self.flush_lock = threading.Lock(), threading.Lock()

    def start(self) -> None:
        if self.thread is not None or not settings.LIMITS_WRITER_THREAD:
            return
        self.stopping.clear()
        self.thread = threading.Thread(target=self.run, name="budget-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait()
            # What the calls of one interval add goes out together.
            if self.stopping.wait(settings.LIMITS_FLUSH_SECONDS):
                return
            try:
                if not self.flush():
                    self.stopping.wait(RETRY_SECONDS)
            finally:
                close_old_connections()  # back to the pool between writes

    def flush(self) -> bool:
        """Write every sum waiting now; on a database error they wait for the next try (False)."""
        with self.flush_lock:
            with self.lock:
                taken, self.sums = self.sums, {}
                self.wake.clear()
            if not taken:
                return True
            try:
                self.write(taken)
            except DatabaseError as error:
                self.put_back(taken)
                logger.warning("Budgets: %d tokens of %d budget windows wait to be written (%s).",
                               sum(taken.values()), len(taken), type(error).__name__)
                return False
            return True

    def stop(self) -> None:
        """At shutdown: stop the thread and write what is pending, here and now."""
        self.stopping.set()
        self.wake.set()
        thread, self.thread = self.thread, None
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(10)
        self.flush()  # on the caller's thread and connection (the process is ending)


@dataclass
class Known:
    """What a process last read of one window of one limit, and what it did since."""

    start: int
    allowed: int
    requests: int  # the window's count of slots, as read
    tokens: int  # as read
    read_at: float  # time.monotonic()
    slots: int = 0  # slots this process took and has not used yet
    spent: int = 0  # tokens this process's calls added since the reading


class Held:
    """A process's knowledge of the windows it counts calls in: its rate slots and its budgets' readings.

    Keyed by (subject, period): a new window, or a limit changed since, makes the entry useless (it is
    replaced at the next statement), so it holds one entry per limit the process has counted.
    """

    def __init__(self):
        self.known: dict[tuple[str, str], Known] = {}
        self.lock = threading.Lock()  # calls are admitted on several database threads; never held across I/O
        self.pid = os.getpid()

    def entry(self, limit: Limit, starts) -> Known | None:
        known = self.known.get((limit.subject, limit.period))
        start = starts[(limit.subject, limit.period)][0]
        return known if known is not None and known.start == start and known.allowed == limit.allowed else None

    def admit(self, limits: list[Limit], starts) -> list[tuple[Limit, int]] | None:
        """From what is held alone: [] admitted (its slots used), the refusals, or None (a statement is needed)."""
        if self.pid != os.getpid():  # a forked child: the parent's slots are the parent's
            self.pid, self.known, self.lock = os.getpid(), {}, threading.Lock()
        fresh_after = time.monotonic() - settings.LIMITS_FLUSH_SECONDS
        with self.lock:
            entries, refusals, unknown = [], [], False
            for limit in limits:
                known = self.entry(limit, starts)
                entries.append(known)
                if known is None:
                    unknown = True
                elif limit.counts == REQUESTS:
                    if not known.slots:
                        if known.requests >= limit.allowed:  # every slot of the window is taken
                            refusals.append((limit, starts[(limit.subject, limit.period)][1]))
                        else:
                            unknown = True
                elif known.tokens + known.spent >= limit.allowed:  # tokens only grow within a window
                    refusals.append((limit, starts[(limit.subject, limit.period)][1]))
                elif known.read_at < fresh_after:
                    unknown = True
            if refusals or unknown:
                return refusals or None
            for limit, known in zip(limits, entries):
                if limit.counts == REQUESTS:
                    known.slots -= 1
            return []

    def asks(self, limits: list[Limit], starts) -> list[tuple[Window, int]]:
        """Each window of the call with the slots to take in it, in one order for every call (rows are locked as
        listed, so two calls never wait on each other in a cycle). A budget's window is read, nothing taken."""
        asks = []
        with self.lock:
            for limit in limits:
                slots = 0
                if limit.counts == REQUESTS:
                    known = self.entry(limit, starts)
                    if known is None:
                        slots = 1
                    elif known.slots < BLOCK_SLOTS // 2:  # topped up while a budget's reading is renewed
                        slots = min(BLOCK_SLOTS - known.slots, (limit.allowed - known.requests) // 8)
                        slots = slots if known.slots else max(1, slots)
                asks.append(((limit.subject, limit.period, starts[(limit.subject, limit.period)][0]), slots))
        return sorted(asks)

    def learn(self, limits: list[Limit], starts, asks, counted) -> list[tuple[Limit, int]]:
        """What the statement read: the slots granted and the readings kept; the call's refusals, or [] with
        its slots used."""
        asked = {(subject, period): slots for (subject, period, _), slots in asks}
        now = time.monotonic()
        with self.lock:
            refusals, granted = [], []
            for limit in limits:
                key = (limit.subject, limit.period)
                requests, tokens = counted[key]
                known = self.entry(limit, starts)
                slots = known.slots if known is not None else 0
                if limit.counts == REQUESTS:
                    slots += max(0, min(asked[key], limit.allowed - (requests - asked[key])))
                    if not slots:
                        refusals.append((limit, starts[key][1]))
                    granted.append(limit)
                elif tokens >= limit.allowed:
                    refusals.append((limit, starts[key][1]))
                self.known[key] = Known(starts[key][0], limit.allowed, requests, tokens, now, slots)
            if not refusals:
                for limit in granted:
                    self.known[(limit.subject, limit.period)].slots -= 1
            return refusals

    def spent(self, windows: tuple[Window, ...], tokens: int) -> None:
        with self.lock:
            for subject, period, start in windows:
                known = self.known.get((subject, period))
                if known is not None and known.start == start:
                    known.spent += tokens

    def forget(self) -> None:
        with self.lock:
            self.known.clear()


HELD = Held()
PENDING_TOKENS = PendingTokens()
atexit.register(PENDING_TOKENS.stop)
