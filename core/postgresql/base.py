"""Django's PostgreSQL backend, with a pool that checks a connection before lending it only when it sat idle.

Django's pool, with CONN_HEALTH_CHECKS, sends an empty statement on every borrow: one more round trip on every
request and every gateway call (docs/benchmarks.md). A connection lent moments ago worked moments ago; one that
sat idle may have been cut meanwhile (a server restart, a firewall's idle timeout). So, as PgBouncer's
`server_check_delay` does, only a connection not lent for CHECK_AFTER_SECONDS is checked (and replaced when the
check fails). A server that restarts within that second fails at most the requests that borrow a connection
from before it, once each (answered 503), and the pool replaces those connections.
"""

import time

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

CHECK_AFTER_SECONDS = 1.0


def check_if_idle(connection) -> None:
    """The pool's check: the empty statement Django's check sends, for a connection not lent lately."""
    from psycopg_pool import ConnectionPool

    now = time.monotonic()
    lent_at = getattr(connection, "lent_at", None)
    connection.lent_at = now
    if lent_at is None or now - lent_at > CHECK_AFTER_SECONDS:
        ConnectionPool.check_connection(connection)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        """Django's pool (the same options), built here when it checks connections, to check them with
        `check_if_idle()`; Django builds it otherwise."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if (options and self.alias != NO_DB_ALIAS and self.alias not in self._connection_pools
                and self.settings_dict["CONN_HEALTH_CHECKS"] and not self.settings_dict.get("CONN_MAX_AGE")):
            from psycopg_pool import ConnectionPool

            kwargs = {**self.get_connection_params(), "autocommit": True}  # as Django opens them
            pool = ConnectionPool(kwargs=kwargs, open=False, configure=self._configure_connection,
                                  check=check_if_idle, **({} if options is True else options))
            self._connection_pools.setdefault(self.alias, pool)
        return super().pool
