"""Which tests run on which database: every test on SQLite, the database-touching ones again on PostgreSQL.

`make test` runs the suite on SQLite (in memory), then `scripts/with-postgres.sh` starts a throwaway
PostgreSQL server and runs it again with TEST_DATABASE_URL set; in that second run only the tests that use
the Django test database are kept (inclusive by default: any test asking for `db`, `transactional_db` or
`live_server`, or marked `django_db`, wherever it lives), minus the paths below. Tests marked
`postgres_only` (real concurrent transactions, which SQLite serializes) are skipped on SQLite.
"""

import pytest
from django.db import connection
from django.test import TransactionTestCase

# Database-touching, but what they check does not depend on the database; the SQLite run covers them.
SQLITE_RUN_ONLY = (
    "tests/browser/",  # the page's behavior in a browser
    "tests/config/test_api_fuzz.py",  # input validation over generated requests (slow, and database-agnostic)
)
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
                     "live_server"}


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def touches_database(item: pytest.Item) -> bool:
    """pytest-django lets a test reach the database only through these, so this is exact, not a guess."""
    test_class = getattr(item, "cls", None)
    return (
        item.get_closest_marker("django_db") is not None
        or bool(DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))
        or (isinstance(test_class, type) and issubclass(test_class, TransactionTestCase))
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres_only: needs real concurrent transactions (PostgreSQL); skipped on SQLite"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {connection.vendor}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not on_postgres():
        skip = pytest.mark.skip(reason="needs PostgreSQL (SQLite serializes writers); run by `make test`")
        for item in items:
            if item.get_closest_marker("postgres_only"):
                item.add_marker(skip)
        return
    root = config.rootpath
    kept, dropped = [], []
    for item in items:
        path = item.path.relative_to(root).as_posix()
        if touches_database(item) and not path.startswith(SQLITE_RUN_ONLY):
            kept.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
