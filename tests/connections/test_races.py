"""Races between real PostgreSQL transactions: requests run in threads (each on its own database connection)
while a blocker transaction holds a row lock, so every test forces one known interleaving instead of hoping
for it. SQLite serializes writers, so these run on PostgreSQL only (`make test` runs them there).
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from django.db import connection as db_connection
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from connections.models import AuditEntry, Connection
from endpoints.models import Endpoint

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

LOCK_WAIT_TIMEOUT = 10.0
BEDROCK = {"aws_access_key_id": "AKIAOLD0000000000000", "aws_secret_access_key": "old-secret-0000000000000000"}
NEW_KEY_ID = "AKIANEW1111111111111"
NEW_SECRET = "new-secret-1111111111111111"


class RowLock:
    """Another session holding `FOR SHARE` on one connection row: reads and foreign-key checks pass, while
    updates, deletes and `SELECT ... FOR UPDATE` wait until `release()`."""

    def __init__(self, connection: Connection):
        self.session = psycopg.connect(**db_connection.get_connection_params())
        table = Connection._meta.db_table
        self.session.execute(f'SELECT 1 FROM "{table}" WHERE id = %s FOR SHARE', [connection.pk])

    def release(self) -> None:
        self.session.rollback()
        self.session.close()


class TableWriteLock:
    """Another session holding SHARE on a table: reads pass, inserts wait until `release()`."""

    def __init__(self, model):
        self.session = psycopg.connect(**db_connection.get_connection_params())
        self.session.execute(f'LOCK TABLE "{model._meta.db_table}" IN SHARE MODE')

    def release(self) -> None:
        self.session.rollback()
        self.session.close()


def sessions_waiting_for_locks() -> int:
    with psycopg.connect(**db_connection.get_connection_params(), autocommit=True) as session:
        return session.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]


def wait_until_waiting(count: int) -> None:
    """Block until `count` sessions wait for a lock: the requests reached the point the test is about."""
    deadline = time.monotonic() + LOCK_WAIT_TIMEOUT
    while sessions_waiting_for_locks() < count:
        assert time.monotonic() < deadline, f"fewer than {count} session(s) ever waited for a lock"
        time.sleep(0.01)


@pytest.fixture
def run_in_thread():
    """Start a call in its own thread (so on its own database connection); returns its Future."""
    pool = ThreadPoolExecutor(max_workers=4)

    def start(call: Callable, *args, **kwargs) -> Future:
        def run():
            try:
                return call(*args, **kwargs)
            finally:
                connections.close_all()  # the thread's own connections, so the test database can be dropped

        return pool.submit(run)

    yield start
    pool.shutdown(wait=True)


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def bedrock(make_connection) -> Connection:
    return make_connection("bedrock-prod", "bedrock", "access_key", secrets=dict(BEDROCK),
                           config={"region": "us-east-1"})


def stored_secrets(name: str) -> dict:
    return Connection.objects.get(name=name).get_secrets()


# --- Two edits of different fields of one connection -----------------------------------------------------


def test_two_api_patches_of_different_secret_fields_both_survive(bedrock, admin_user, run_in_thread):
    lock = RowLock(bedrock)
    first = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                          {"secrets": {"aws_access_key_id": NEW_KEY_ID}}, format="json")
    second = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                           {"secrets": {"aws_secret_access_key": NEW_SECRET}}, format="json")
    wait_until_waiting(2)  # both requests are in: without a lock at load, both have already read the row
    lock.release()

    assert first.result().status_code == 200 and second.result().status_code == 200
    assert stored_secrets("bedrock-prod") == {"aws_access_key_id": NEW_KEY_ID, "aws_secret_access_key": NEW_SECRET}
    rotations = AuditEntry.objects.filter(action=AuditEntry.Action.KEY_ROTATED).order_by("id")
    assert sorted(entry.fields[0] for entry in rotations) == ["secrets.aws_access_key_id",
                                                             "secrets.aws_secret_access_key"]


def test_an_api_patch_and_a_page_edit_of_different_fields_both_survive(bedrock, admin_user, run_in_thread):
    lock = RowLock(bedrock)
    patched = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                            {"secrets": {"aws_access_key_id": NEW_KEY_ID}}, format="json")
    edited = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/", {
        "name": "bedrock-prod", "provider": "bedrock", "auth_method": "access_key",
        "selection": "bedrock/access_key", "config.region": "us-east-1", "description": "",
        "secrets.aws_secret_access_key": NEW_SECRET,  # the other inputs left empty: keep what is stored
    })
    wait_until_waiting(2)
    lock.release()

    assert patched.result().status_code == 200 and edited.result().status_code == 302
    assert stored_secrets("bedrock-prod") == {"aws_access_key_id": NEW_KEY_ID, "aws_secret_access_key": NEW_SECRET}


def test_two_page_edits_of_a_secret_and_the_description_both_survive(bedrock, admin_user, run_in_thread):
    form = {"name": "bedrock-prod", "provider": "bedrock", "auth_method": "access_key",
            "selection": "bedrock/access_key", "config.region": "us-east-1", "description": ""}
    lock = RowLock(bedrock)
    rotated = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/",
                            {**form, "secrets.aws_access_key_id": NEW_KEY_ID})
    described = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/",
                              {**form, "description": "Production Bedrock"})
    wait_until_waiting(2)
    lock.release()

    assert rotated.result().status_code == 302 and described.result().status_code == 302
    stored = Connection.objects.get(name="bedrock-prod")
    assert stored.get_secrets()["aws_access_key_id"] == NEW_KEY_ID
    assert stored.description == "Production Bedrock"
