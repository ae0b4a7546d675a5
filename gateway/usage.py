"""When a connection was last used: moved at most once a minute, so gateway traffic does not write per call."""

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from connections.models import Connection

LAST_USED_RESOLUTION = timedelta(minutes=1)


def touch_last_used(connection: Connection, *, now: datetime | None = None) -> bool:
    """Record a use; no query while the loaded value is fresh, and one conditional UPDATE otherwise.

    The UPDATE only matches a stale row, so many processes with stale copies still write once a minute
    at most. It bypasses save(): no auto_now, no audit entry, no other field touched. True if it wrote.
    """
    now = now or timezone.now()
    cutoff = now - LAST_USED_RESOLUTION
    if connection.last_used_at is not None and connection.last_used_at > cutoff:
        return False
    written = (
        Connection.objects.filter(pk=connection.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff))
        .update(last_used_at=now)
    )
    # Either we wrote `now` or another process wrote something newer than the cutoff: fresh enough.
    connection.last_used_at = now
    return bool(written)
