"""Races between real PostgreSQL transactions: requests run in threads (each on its own database connection)
while another session holds a row or table lock, and the test waits until PostgreSQL reports the requests
waiting, so every test forces one known interleaving instead of hoping for it. SQLite serializes writers,
so these run on PostgreSQL only (`make test` runs them there).
"""

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from django.db import connection as db_connection
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from connections.models import Connection
from endpoints.models import Destination, Endpoint

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

LOCK_WAIT_TIMEOUT = 10.0
BEDROCK = {"aws_access_key_id": "AKIAOLD0000000000000", "aws_secret_access_key": "old-secret-0000000000000000"}
NEW_KEY_ID = "AKIANEW1111111111111"
NEW_SECRET = "new-secret-1111111111111111"


class Blocker:
    """Another database session holding a lock until `release()` (at the latest when the test ends)."""

    def __init__(self, statement: str, params: list | None = None):
        self.session = psycopg.connect(**db_connection.get_connection_params())
        self.session.execute(statement, params)

    def release(self) -> None:
        if not self.session.closed:
            self.session.rollback()
            self.session.close()


@pytest.fixture
def lock(run_in_thread):
    """`lock.row(connection)`: FOR SHARE on its row, so reads and foreign-key checks pass while updates, deletes
    and `SELECT ... FOR UPDATE` wait. `lock.inserts(Model)`: SHARE on its table, so reads pass, inserts wait."""
    taken: list[Blocker] = []

    class Locks:
        @staticmethod
        def row(connection: Connection) -> Blocker:
            table = Connection._meta.db_table
            taken.append(Blocker(f'SELECT 1 FROM "{table}" WHERE id = %s FOR SHARE', [connection.pk]))
            return taken[-1]

        @staticmethod
        def inserts(model) -> Blocker:
            taken.append(Blocker(f'LOCK TABLE "{model._meta.db_table}" IN SHARE MODE'))
            return taken[-1]

    yield Locks
    for blocker in taken:  # a failed test must not leave its requests waiting forever
        blocker.release()


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
    pool = ThreadPoolExecutor(max_workers=4)  # torn down after `lock`, so no request still waits on it

    def start(call: Callable, *args, **kwargs) -> Future:
        def run():
            try:
                return call(*args, **kwargs)
            finally:
                connections.close_all()  # the thread's own connections, so the test database can be dropped

        return pool.submit(run)

    yield start
    pool.shutdown(wait=True, cancel_futures=True)


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


def test_two_api_patches_of_different_secret_fields_both_survive(bedrock, admin_user, lock, run_in_thread):
    blocker = lock.row(bedrock)
    first = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                          {"secrets": {"aws_access_key_id": NEW_KEY_ID}}, format="json")
    second = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                           {"secrets": {"aws_secret_access_key": NEW_SECRET}}, format="json")
    wait_until_waiting(2)  # both requests are in: without a lock at load, both have already read the row
    blocker.release()

    assert first.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200 and second.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200
    assert stored_secrets("bedrock-prod") == {"aws_access_key_id": NEW_KEY_ID, "aws_secret_access_key": NEW_SECRET}
    rotations = AuditEntry.objects.filter(action=AuditEntry.Action.KEY_ROTATED).order_by("id")
    assert sorted(entry.fields[0] for entry in rotations) == ["secrets.aws_access_key_id",
                                                             "secrets.aws_secret_access_key"]


def test_an_api_patch_and_a_page_edit_of_different_fields_both_survive(bedrock, admin_user, lock, run_in_thread):
    blocker = lock.row(bedrock)
    patched = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                            {"secrets": {"aws_access_key_id": NEW_KEY_ID}}, format="json")
    edited = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/", {
        "name": "bedrock-prod", "provider": "bedrock", "auth_method": "access_key",
        "selection": "bedrock/access_key", "config.region": "us-east-1", "description": "",
        "secrets.aws_secret_access_key": NEW_SECRET,  # the other inputs left empty: keep what is stored
    })
    wait_until_waiting(2)
    blocker.release()

    assert patched.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200 and edited.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302
    assert stored_secrets("bedrock-prod") == {"aws_access_key_id": NEW_KEY_ID, "aws_secret_access_key": NEW_SECRET}


def test_two_page_edits_of_a_secret_and_the_description_both_survive(bedrock, admin_user, lock, run_in_thread):
    form = {"name": "bedrock-prod", "provider": "bedrock", "auth_method": "access_key",
            "selection": "bedrock/access_key", "config.region": "us-east-1", "description": ""}
    blocker = lock.row(bedrock)
    # The page submits the whole form: a blank secret keeps the stored one, but the description is taken as
    # typed. So the key rotation queues first (PostgreSQL grants row locks in order), the description second.
    rotated = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/",
                            {**form, "secrets.aws_access_key_id": NEW_KEY_ID})
    wait_until_waiting(1)
    described = run_in_thread(page_client(admin_user).post, "/settings/connections/bedrock-prod/edit/",
                              {**form, "description": "Production Bedrock"})
    wait_until_waiting(2)
    blocker.release()

    assert rotated.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302 and described.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302
    stored = Connection.objects.get(name="bedrock-prod")
    assert stored.get_secrets()["aws_access_key_id"] == NEW_KEY_ID
    assert stored.description == "Production Bedrock"


# --- Deleting a connection while an endpoint is attached to it ----------------------------------------------


@pytest.fixture
def unused(make_connection) -> Connection:
    return make_connection("openai-prod")


CHAT = {"name": "chat", "connection": "openai-prod", "model": "gpt-4o-mini", "task": "chat"}


def page_form(connection: Connection) -> dict:
    """The endpoint form as a browser posts it: one primary destination on the connection."""
    return {"name": "chat", "task": "chat", "enabled": "on", "deadline_seconds": "120",
            "destinations-TOTAL_FORMS": "1", "destinations-INITIAL_FORMS": "0",
            "destinations-MIN_NUM_FORMS": "0", "destinations-MAX_NUM_FORMS": "10",
            "destinations-0-connection": connection.pk, "destinations-0-model": "gpt-4o-mini",
            "destinations-0-role": "primary", "destinations-0-weight": "100"}


def assert_every_endpoint_has_its_connection() -> None:
    assert not Destination.objects.exclude(connection_id__in=Connection.objects.values("id")).exists()


def test_an_endpoint_attached_while_the_delete_runs_makes_the_api_delete_409_at_commit(
    unused, admin_user, lock, run_in_thread
):
    # The delete finds no endpoint, then waits to delete the row; the endpoint is attached and committed
    # meanwhile, so the refusal comes from the foreign key when the delete commits, not from PROTECT.
    blocker = lock.row(unused)
    deleting = run_in_thread(api_client(admin_user).delete, "/api/v1/connections/openai-prod/")
    wait_until_waiting(1)
    created = run_in_thread(api_client(admin_user).post, "/api/v1/endpoints/", CHAT, format="json")
    assert created.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 201
    blocker.release()

    response = deleting.result(timeout=LOCK_WAIT_TIMEOUT)
    assert response.status_code == 409
    assert response.json()["endpoints"] == ["chat"]
    assert Endpoint.objects.get(name="chat").destinations.get().connection_id == unused.pk
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.DELETED).exists()


def test_an_endpoint_attached_while_the_delete_runs_makes_the_page_warn(unused, admin_user, lock, run_in_thread):
    blocker = lock.row(unused)
    deleting = run_in_thread(page_client(admin_user).post, "/settings/connections/openai-prod/delete/")
    wait_until_waiting(1)
    created = run_in_thread(page_client(admin_user).post, "/settings/endpoints/new/",
                            page_form(unused))
    assert created.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302
    blocker.release()

    response = deleting.result(timeout=LOCK_WAIT_TIMEOUT)
    assert response.status_code == 409
    assert "was not deleted: 1 endpoint(s) still use it" in response.content.decode()
    assert Endpoint.objects.get(name="chat").destinations.get().connection_id == unused.pk


def test_an_endpoint_attached_while_the_admin_deletes_keeps_its_connection(unused, admin_user, lock, run_in_thread):
    # The admin reads the row locked for the delete, so it waits; meanwhile an endpoint attaches. Once it has
    # the row, the admin sees the endpoint and answers with its "protected related objects" page.
    blocker = lock.row(unused)
    deleting = run_in_thread(page_client(admin_user).post, f"/admin/connections/connection/{unused.pk}/delete/",
                             {"post": "yes"})
    wait_until_waiting(1)
    created = run_in_thread(api_client(admin_user).post, "/api/v1/endpoints/", CHAT, format="json")
    assert created.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 201
    blocker.release()

    answer = deleting.result(timeout=LOCK_WAIT_TIMEOUT)
    assert answer.status_code == 200 and "protected related objects" in answer.content.decode()
    assert Connection.objects.filter(pk=unused.pk).exists()
    assert Endpoint.objects.get(name="chat").destinations.get().connection_id == unused.pk


def test_an_endpoint_created_for_a_connection_deleted_meanwhile_gets_409_from_the_api(
    unused, admin_user, lock, run_in_thread
):
    # The creation has found the connection by name and waits to insert; the delete commits first.
    blocker = lock.inserts(Endpoint)
    created = run_in_thread(api_client(admin_user).post, "/api/v1/endpoints/", CHAT, format="json")
    wait_until_waiting(1)
    deleted = run_in_thread(api_client(admin_user).delete, "/api/v1/connections/openai-prod/")
    assert deleted.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 204
    blocker.release()

    assert created.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 409
    assert not Endpoint.objects.exists()
    assert_every_endpoint_has_its_connection()


def test_an_endpoint_created_for_a_connection_deleted_meanwhile_gets_the_forms_warning(
    unused, admin_user, lock, run_in_thread
):
    blocker = lock.inserts(Endpoint)
    created = run_in_thread(page_client(admin_user).post, "/settings/endpoints/new/",
                            page_form(unused))
    wait_until_waiting(1)
    deleted = run_in_thread(page_client(admin_user).post, "/settings/connections/openai-prod/delete/")
    assert deleted.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302
    blocker.release()

    response = created.result(timeout=LOCK_WAIT_TIMEOUT)
    assert response.status_code == 409
    assert "A chosen connection was deleted meanwhile" in response.content.decode()
    assert not Endpoint.objects.exists()


# --- Renaming a connection while an endpoint is created for it ----------------------------------------------


def test_an_endpoint_created_while_its_connection_is_renamed_stays_attached(unused, admin_user, lock, run_in_thread):
    # The creation has found "openai-prod" and waits to insert; the rename to "openai-main" commits first.
    blocker = lock.inserts(Endpoint)
    created = run_in_thread(api_client(admin_user).post, "/api/v1/endpoints/", CHAT, format="json")
    wait_until_waiting(1)
    renamed = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/openai-prod/",
                            {"name": "openai-main"}, format="json")
    assert renamed.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200
    blocker.release()

    response = created.result(timeout=LOCK_WAIT_TIMEOUT)
    assert response.status_code == 201
    assert response.json()["connection"] == "openai-main"  # what it is attached to now, not the name it was given
    assert Endpoint.objects.get(name="chat").destinations.get().connection_id == unused.pk
    assert api_client(admin_user).get("/api/v1/connections/openai-main/").json()["endpoints"] == ["chat"]


def test_a_rename_waiting_on_the_row_lets_a_concurrent_endpoint_attach(unused, admin_user, lock, run_in_thread):
    # The other order: the rename holds the row (locked for edit) while the endpoint is created by the old name.
    blocker = lock.row(unused)
    renamed = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/openai-prod/",
                            {"name": "openai-main"}, format="json")
    wait_until_waiting(1)
    created = run_in_thread(api_client(admin_user).post, "/api/v1/endpoints/", CHAT, format="json")
    assert created.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 201
    blocker.release()

    assert renamed.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200
    assert Endpoint.objects.get(name="chat").destinations.get().connection.name == "openai-main"


def test_an_api_key_rotation_and_an_admin_edit_both_survive(bedrock, admin_user, lock, run_in_thread):
    blocker = lock.row(bedrock)
    rotated = run_in_thread(api_client(admin_user).patch, "/api/v1/connections/bedrock-prod/",
                            {"secrets": {"aws_access_key_id": NEW_KEY_ID}}, format="json")
    wait_until_waiting(1)
    # The admin's form is the whole row; its blank secret inputs keep what is stored when it saves.
    described = run_in_thread(page_client(admin_user).post, f"/admin/connections/connection/{bedrock.pk}/change/", {
        "name": "bedrock-prod", "provider": "bedrock", "auth_method": "access_key",
        "selection": "bedrock/access_key", "config.region": "us-east-1", "description": "Production Bedrock",
    })
    wait_until_waiting(2)
    blocker.release()

    assert rotated.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 200
    assert described.result(timeout=LOCK_WAIT_TIMEOUT).status_code == 302
    stored = Connection.objects.get(name="bedrock-prod")
    assert stored.get_secrets() == {**BEDROCK, "aws_access_key_id": NEW_KEY_ID}
    assert stored.description == "Production Bedrock"
