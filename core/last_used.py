"""When something was last used (a connection by the gateway, a token by any caller), written at most once a
minute per row, so that traffic does not write on every call."""

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

LAST_USED_RESOLUTION = timedelta(minutes=1)


def is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use at `now` is worth writing down over `last_used_at`."""
    return last_used_at is None or last_used_at <= now - LAST_USED_RESOLUTION


def touch_last_used(instance: models.Model, *, now: datetime | None = None) -> bool:
    """Record a use of a row with a `last_used_at` field; True if this wrote it.

    No query while the loaded value is fresh, and one conditional UPDATE otherwise. The UPDATE only matches
    a stale row, so many processes with stale copies still write once a minute at most. It bypasses save():
    no auto_now, no audit entry, no other field touched.
    """
    now = now or timezone.now()
    if not is_stale(instance.last_used_at, now):
        return False
    cutoff = now - LAST_USED_RESOLUTION
    written = (
        type(instance)._default_manager.filter(pk=instance.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff))
        .update(last_used_at=now)
    )
    # Either we wrote `now` or another process wrote something newer than the cutoff: fresh enough.
    instance.last_used_at = now
    return bool(written)
