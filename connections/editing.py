"""Editing one connection without losing a concurrent edit of another field.

An edit reads the row, changes some fields (a PATCH merges the named secrets into the stored ones) and writes
the whole row back. Two edits that both read before either writes would each write back the other's field
as it was: the second overwrites the first. Reading the row with `SELECT ... FOR UPDATE` inside the
transaction that saves it makes the second edit wait, then start from the first one's result.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import QuerySet

EDIT_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RowLockedForEdit:
    """For a view that edits one connection (Django's UpdateView or a DRF viewset): on an edit request its
    queryset locks the row it loads. The view must run the edit in `transaction.atomic()` (the lock lasts
    until the transaction ends, so the save has to be in that same transaction).

    A view (or a DRF action) that posts without editing the row, such as a Test, sets `locks_row = False`: it
    reads the row outside any transaction, and a provider call must never be made holding a row lock."""

    locks_row = True

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.locks_row and self.request.method in EDIT_METHODS:
            # `of=self`: the joined users (nullable) need no lock, and PostgreSQL refuses to lock outer joins.
            # No prefetching: related rows read before the save are stale after it (DRF reads them again).
            queryset = queryset.select_for_update(of=("self",)).prefetch_related(None)
        return queryset

    @contextmanager
    def row_unlocked(self) -> Iterator[None]:
        """Reads inside read the row without a lock: a look before the edit's own transaction starts."""
        previous, self.locks_row = self.locks_row, False
        try:
            yield
        finally:
            self.locks_row = previous
