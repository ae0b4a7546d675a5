"""PostgreSQL's pool checks a connection before lending it only when it was not lent in the last second."""

import time

import pytest
from django.db import OperationalError, connection

from core.postgresql.base import CHECK_AFTER_SECONDS, DatabaseWrapper


@pytest.fixture
def pooled():
    """A database wrapper of its own with a pool of one connection, and a function that cuts that connection
    from the server's side (as a restart or a firewall would)."""
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's")
    settings = {**connection.settings_dict, "OPTIONS": {**connection.settings_dict["OPTIONS"],
                                                         "pool": {"min_size": 1, "max_size": 1, "timeout": 3}}}
    wrapper = DatabaseWrapper(settings, alias="pool-check-test")

    def cut() -> None:
        wrapper.ensure_connection()
        backend = wrapper.connection.info.backend_pid
        wrapper.close()  # back to the pool
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
            assert cursor.fetchone() == (True,)

    yield wrapper, cut
    wrapper.close()
    wrapper.close_pool()


def answer(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 7")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_connection_cut_while_it_sat_idle_is_replaced_before_it_is_lent(pooled):
    wrapper, cut = pooled
    cut()
    time.sleep(CHECK_AFTER_SECONDS + 0.2)

    assert answer(wrapper) == 7


@pytest.mark.django_db
def test_a_connection_lent_again_within_the_second_is_not_checked_so_a_cut_one_fails_once_then_is_replaced(pooled):
    wrapper, cut = pooled
    cut()

    with pytest.raises(OperationalError):
        answer(wrapper)
    wrapper.close()
    assert answer(wrapper) == 7
