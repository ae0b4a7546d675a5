"""The database session store, reading a session by a statement compiled once.

Every signed-in page reads its session first; the ORM built and compiled that query again on each request, which
cost several times running it. Same table, same encoding, same expiry rule as Django's database store.
"""

from datetime import UTC, datetime

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone

from .rows import CompiledQuery


def _session_data(key: str, now: datetime):
    from django.contrib.sessions.models import Session

    return Session.objects.filter(session_key=key, expire_date__gt=now).values_list("session_data")


SESSION_DATA = CompiledQuery(_session_data, key="sample-session-key-7350",
                             now=datetime(2001, 2, 3, 4, 5, 6, 735000, tzinfo=UTC))


class SessionStore(DatabaseSessionStore):
    def load(self) -> dict:
        """As Django's store loads: the session's data while it has not expired; otherwise none, and a new key."""
        row = SESSION_DATA.fetchone(self.model.objects.db, key=self.session_key, now=timezone.now())
        if row is None:
            self._session_key = None
            return {}
        return self.decode(row[0])
