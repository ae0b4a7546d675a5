"""Re-encrypting every stored secret under the first FIELD_ENCRYPTION_KEY, online, restartable and checkable.

The servers keep serving while this runs, so nothing here holds a lock for long or trusts a value it
read earlier: rows are read in primary-key batches outside any transaction, re-encrypted in memory, and
each one is written back only if its ciphertext is still the one that was read (a compare-and-swap in
the UPDATE's WHERE clause). A row edited meanwhile is read again and retried, never overwritten.

Every row is at all times either its old ciphertext or its new one, both readable with the configured
key list, so an interrupted run (Ctrl-C, kill -9, a crash) loses nothing and a rerun finishes the job.

The library's crypter is built once at import (docs/encryption-and-rotation.md), so this module builds its own
MultiFernet from `settings.FIELD_ENCRYPTION_KEY` each time it is asked.
"""

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from audit.models import AuditEntry
from audit.services import audit_record

from .models import Connection

DEFAULT_BATCH_SIZE = 500
# A row that keeps changing under us is left for the next run rather than retried forever.
MAX_ATTEMPTS = 5


class KeyStatus(enum.Enum):
    """Which configured key decrypts a stored value."""

    FIRST = "first"
    OLDER = "older"
    NONE = "none"


@dataclass(frozen=True)
class StoredSecret:
    """A connection's secrets exactly as stored: the raw Fernet token, never decrypted by the ORM."""

    pk: int
    name: str
    ciphertext: str

    def __repr__(self) -> str:  # the token is not a secret, but it has no business in logs either
        return f"<StoredSecret {self.pk} {self.name!r}>"


@dataclass
class KeyCensus:
    """How many stored values each kind of key decrypts, and which connections none does."""

    first: int = 0
    older: int = 0
    undecryptable: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.first + self.older + len(self.undecryptable)

    @property
    def all_under_first_key(self) -> bool:
        return self.older == 0 and not self.undecryptable


@dataclass
class BatchOutcome:
    """What writing one batch did; `conflicts` are rows changed since they were read (not yet settled)."""

    rewritten: int = 0
    already_first: int = 0
    retried: int = 0
    deleted_meanwhile: int = 0
    conflicts: list[int] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    undecryptable: list[str] = field(default_factory=list)


@dataclass
class RotationProgress:
    """Running totals, reported after every batch."""

    total: int
    checked: int = 0
    rewritten: int = 0
    already_first: int = 0
    retried: int = 0
    deleted_meanwhile: int = 0
    unfinished: list[str] = field(default_factory=list)
    undecryptable: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unfinished and not self.undecryptable


class UndecryptableValues(Exception):
    """Some stored values decrypt with no configured key; nothing was changed."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(
            f"{len(names)} connection(s) cannot be decrypted with any configured FIELD_ENCRYPTION_KEY: "
            f"{', '.join(names)}. Nothing was changed. Add the key that encrypted them to FIELD_ENCRYPTION_KEY "
            "(after the new first key) and restart, or re-enter their secrets, then run this again."
        )


# --- Keys --------------------------------------------------------------------------------------------


def configured_fernets(keys: Sequence[str] | None = None) -> list[Fernet]:
    """One Fernet per configured key, first (the encrypting one) first."""
    keys = settings.FIELD_ENCRYPTION_KEY if keys is None else keys
    if isinstance(keys, (str, bytes)):  # a comma-joined string would silently be one key
        raise TypeError("FIELD_ENCRYPTION_KEY must be a list of keys.")
    return [Fernet(key) for key in keys]


def key_status(ciphertext: str, *, fernets: Sequence[Fernet]) -> KeyStatus:
    """Which key decrypts this token: the first, an older one, or none of them."""
    token = ciphertext.encode("ascii", errors="replace")
    for position, fernet in enumerate(fernets):
        try:
            fernet.decrypt(token)
        except InvalidToken:
            continue
        return KeyStatus.FIRST if position == 0 else KeyStatus.OLDER
    return KeyStatus.NONE


# --- Reading raw ciphertext --------------------------------------------------------------------------


def _raw_rows():
    # Cast to plain text so the field's from_db_value (which decrypts) never runs: we want the token.
    return Connection.objects.order_by("pk").values_list("pk", "name", Cast("secrets", output_field=TextField()))


def iter_stored_secrets(*, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[list[StoredSecret]]:
    """Every connection's raw ciphertext, in primary-key batches, never all rows in memory at once."""
    rows = _raw_rows()
    while True:
        batch = [StoredSecret(pk, name, raw or "") for pk, name, raw in rows[:batch_size]]
        if not batch:
            return
        yield batch
        rows = _raw_rows().filter(pk__gt=batch[-1].pk)


def read_stored_secrets(*, pks: Sequence[int]) -> list[StoredSecret]:
    """The current raw ciphertext of these rows (rows deleted meanwhile are simply absent)."""
    return [StoredSecret(pk, name, raw or "") for pk, name, raw in _raw_rows().filter(pk__in=list(pks))]


def take_census(*, batch_size: int = DEFAULT_BATCH_SIZE, keys: Sequence[str] | None = None) -> KeyCensus:
    """Count stored values under the first key, an older key and none (the `--check` report)."""
    fernets = configured_fernets(keys)
    census = KeyCensus()
    for batch in iter_stored_secrets(batch_size=batch_size):
        for row in batch:
            status = key_status(row.ciphertext, fernets=fernets)
            if status is KeyStatus.FIRST:
                census.first += 1
            elif status is KeyStatus.OLDER:
                census.older += 1
            else:
                census.undecryptable.append(row.name)
    return census


# --- Writing -----------------------------------------------------------------------------------------


def _compare_and_swap_sql() -> str:
    meta = Connection._meta
    quote = db_connection.ops.quote_name
    table, column, pk = meta.db_table, meta.get_field("secrets").column, meta.pk.column
    return f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote(pk)} = %s AND {quote(column)} = %s"


def reencrypt_batch(*, rows: Sequence[StoredSecret], fernets: Sequence[Fernet]) -> BatchOutcome:
    """Re-encrypt these rows under the first key in one transaction, each only if unchanged since read.

    The cryptography runs before the transaction opens, so the write lock (SQLite) is held only for
    the UPDATEs. Timestamps stay as they are: the secrets themselves did not change.
    """
    outcome = BatchOutcome()
    first, crypter = fernets[0], MultiFernet(list(fernets))
    writes: list[tuple[str, int, str]] = []
    for row in rows:
        token = row.ciphertext.encode("ascii", errors="replace")
        try:
            first.decrypt(token)
        except InvalidToken:
            pass
        else:
            outcome.already_first += 1
            continue
        try:
            new = crypter.rotate(token).decode("ascii")
        except InvalidToken:
            outcome.undecryptable.append(row.name)
            continue
        writes.append((new, row.pk, row.ciphertext))
    if not writes:
        return outcome
    sql = _compare_and_swap_sql()
    with transaction.atomic(), db_connection.cursor() as cursor:
        for params in writes:
            cursor.execute(sql, params)
            if cursor.rowcount == 1:
                outcome.rewritten += 1
            else:
                outcome.conflicts.append(params[1])
    return outcome


def rotate_rows(*, rows: Sequence[StoredSecret], fernets: Sequence[Fernet]) -> BatchOutcome:
    """Re-encrypt one batch; rows changed since they were read are read again and retried.

    Whatever was written meanwhile wins: a retried row is re-encrypted from its fresh ciphertext (or left
    alone when it is already under the first key). A row still changing after MAX_ATTEMPTS is reported
    as unfinished for the next run.
    """
    outcome = reencrypt_batch(rows=rows, fernets=fernets)
    pending, outcome.conflicts = outcome.conflicts, []
    for _ in range(MAX_ATTEMPTS):
        if not pending:
            return outcome
        outcome.retried += len(pending)
        fresh = read_stored_secrets(pks=pending)
        outcome.deleted_meanwhile += len(pending) - len(fresh)
        retry = reencrypt_batch(rows=fresh, fernets=fernets)
        outcome.rewritten += retry.rewritten
        outcome.already_first += retry.already_first
        outcome.undecryptable += retry.undecryptable
        pending = retry.conflicts
    if pending:
        outcome.unfinished += [row.name for row in read_stored_secrets(pks=pending)]
    return outcome


def rotate_encryption_key(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keys: Sequence[str] | None = None,
    actor: AbstractBaseUser | None = None,
    progress: Callable[[RotationProgress], None] | None = None,
) -> RotationProgress:
    """Re-encrypt every connection's secrets under the first configured key; record one audit entry.

    Refuses (UndecryptableValues, nothing changed) when any stored value decrypts with no configured
    key. Rows already under the first key are left alone, which is what makes a rerun cheap.
    """
    fernets = configured_fernets(keys)
    census = take_census(batch_size=batch_size, keys=keys)
    if census.undecryptable:
        raise UndecryptableValues(census.undecryptable)
    state = RotationProgress(total=census.total)
    for batch in iter_stored_secrets(batch_size=batch_size):
        outcome = rotate_rows(rows=batch, fernets=fernets)
        state.checked += len(batch)
        state.rewritten += outcome.rewritten
        state.already_first += outcome.already_first
        state.retried += outcome.retried
        state.deleted_meanwhile += outcome.deleted_meanwhile
        state.unfinished += outcome.unfinished
        state.undecryptable += outcome.undecryptable
        if progress is not None:
            progress(state)
    audit_record(actor=actor, action=AuditEntry.Action.ENCRYPTION_KEY_ROTATED, fields=["secrets"])
    return state
