"""Re-encrypting stored secrets under a new FIELD_ENCRYPTION_KEY: census, rotation, refusal, interruption
and edits made while it runs."""

import json
import signal
import sqlite3
import time
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection as db_connection

from connections import rotation
from audit.models import AuditEntry
from connections.models import Connection
from connections.services import connection_rotate_key, connection_save
from tests.conftest import PLANTED_KEY

from .conftest import BULK_ROWS, KEY_A, KEY_B, KEY_C

EDITED_KEY = "sk-edited-DURING-rotation-0123456789"


def raw_ciphertexts() -> dict[str, str]:
    return {row.name: row.ciphertext for batch in rotation.iter_stored_secrets() for row in batch}


def corrupt(name: str, key: str = KEY_C) -> None:
    """Store a value only `key` decrypts, as if it had been written with a key since lost."""
    token = Fernet(key).encrypt(b'{"api_key": "sk-under-a-lost-key-000000000"}').decode()
    with db_connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Connection._meta.db_table} SET secrets = %s WHERE name = %s", [token, name])


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_key", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def under_key_a(make_connection):
    """Five connections encrypted under key A (the test settings' key)."""
    return [make_connection(f"conn-{number}", secrets={"api_key": f"{PLANTED_KEY}-{number}"}) for number in range(5)]


@pytest.mark.django_db
class TestEndToEnd:
    def test_rotate_then_drop_the_old_key(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)
        with pytest.raises(CommandError, match="5 connection"):
            run_command("--check")
        assert rotation.take_census() == rotation.KeyCensus(first=0, older=5)

        output = run_command()

        assert "Re-encrypted 5 of 5" in output
        assert "Under the first key:  5" in run_command("--check")
        use_keys(KEY_B)
        for number in range(5):
            assert Connection.objects.get(name=f"conn-{number}").get_secrets() == {"api_key": f"{PLANTED_KEY}-{number}"}
        assert PLANTED_KEY not in output

    def test_it_records_one_audit_entry_for_the_run(self, under_key_a, use_keys, django_user_model):
        django_user_model.objects.create_user("alice", password="pw-alice-123456")
        use_keys(KEY_B, KEY_A)

        call_command("rotate_encryption_key", "--batch-size", "2", "--user", "alice", stdout=StringIO())

        entry = AuditEntry.objects.get(action=AuditEntry.Action.ENCRYPTION_KEY_ROTATED)
        assert (entry.actor_name, entry.subject_id, entry.fields) == ("alice", None, ["secrets"])
        assert entry.get_action_display() == "Encryption key rotated"

    def test_timestamps_are_left_alone(self, under_key_a, use_keys):
        before = {c.name: (c.updated_at, c.secrets_updated_at) for c in Connection.objects.all()}
        use_keys(KEY_B, KEY_A)

        run_command()

        assert {c.name: (c.updated_at, c.secrets_updated_at) for c in Connection.objects.all()} == before

    def test_a_rerun_rewrites_nothing(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)
        run_command()
        after_first_run = raw_ciphertexts()

        output = run_command()

        assert "Re-encrypted 0 of 5 connection(s) under the first key (5 already were)" in output
        assert raw_ciphertexts() == after_first_run

    def test_dry_run_changes_nothing(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)
        before = raw_ciphertexts()

        output = run_command("--dry-run")

        assert "Would re-encrypt 5 of 5" in output
        assert raw_ciphertexts() == before
        assert not AuditEntry.objects.filter(action=AuditEntry.Action.ENCRYPTION_KEY_ROTATED).exists()

    def test_a_value_no_key_decrypts_stops_it_before_any_change(self, under_key_a, use_keys):
        corrupt("conn-3")
        use_keys(KEY_B, KEY_A)
        before = raw_ciphertexts()

        with pytest.raises(CommandError) as raised:
            run_command("--batch-size", "2")

        assert "cannot be decrypted with any configured FIELD_ENCRYPTION_KEY: conn-3." in str(raised.value)
        assert "Nothing was changed" in str(raised.value)
        assert raw_ciphertexts() == before
        assert not AuditEntry.objects.filter(action=AuditEntry.Action.ENCRYPTION_KEY_ROTATED).exists()

    def test_with_a_single_key_it_explains_instead_of_rotating(self, under_key_a):
        output = run_command()

        assert "holds a single key" in output and "FIELD_ENCRYPTION_KEY=new,old" in output
        assert not AuditEntry.objects.filter(action=AuditEntry.Action.ENCRYPTION_KEY_ROTATED).exists()

    def test_check_names_what_cannot_be_decrypted(self, under_key_a, use_keys):
        corrupt("conn-1")
        use_keys(KEY_B, KEY_A)
        out = StringIO()

        with pytest.raises(CommandError, match="cannot be decrypted with any configured key: conn-1"):
            call_command("rotate_encryption_key", "--check", stdout=out)

        assert "Under an older key:   4\nCannot be decrypted:  1" in out.getvalue()


@pytest.mark.django_db
class TestPieces:
    def test_key_status(self, use_keys):
        fernets = rotation.configured_fernets([KEY_B, KEY_A])

        assert rotation.key_status(Fernet(KEY_B).encrypt(b"x").decode(), fernets=fernets) is rotation.KeyStatus.FIRST
        assert rotation.key_status(Fernet(KEY_A).encrypt(b"x").decode(), fernets=fernets) is rotation.KeyStatus.OLDER
        assert rotation.key_status(Fernet(KEY_C).encrypt(b"x").decode(), fernets=fernets) is rotation.KeyStatus.NONE
        assert rotation.key_status("not a token at all", fernets=fernets) is rotation.KeyStatus.NONE

    def test_a_comma_joined_key_string_is_refused(self):
        with pytest.raises(TypeError, match="list"):
            rotation.configured_fernets(f"{KEY_B},{KEY_A}")

    def test_rows_come_in_primary_key_batches(self, under_key_a):
        batches = list(rotation.iter_stored_secrets(batch_size=2))

        assert [len(batch) for batch in batches] == [2, 2, 1]
        assert [row.name for batch in batches for row in batch] == [f"conn-{n}" for n in range(5)]

    def test_raw_rows_carry_ciphertext_never_plaintext(self, under_key_a):
        [batch] = rotation.iter_stored_secrets(batch_size=10)

        assert all(PLANTED_KEY not in row.ciphertext and row.ciphertext.startswith("gAAAAA") for row in batch)
        assert PLANTED_KEY not in repr(batch) and "gAAAAA" not in repr(batch)

    def test_reading_a_batch_costs_one_query(self, under_key_a, django_assert_num_queries):
        with django_assert_num_queries(1):
            next(rotation.iter_stored_secrets(batch_size=10))


@pytest.mark.django_db
class TestEditsDuringTheRun:
    def test_a_key_edited_between_read_and_write_is_retried_not_overwritten(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)  # the servers already run with the new list
        fernets = rotation.configured_fernets()
        [stale_batch] = rotation.iter_stored_secrets(batch_size=10)
        edited = Connection.objects.get(name="conn-2")
        connection_rotate_key(connection=edited, field="api_key", value=EDITED_KEY, actor=None)

        outcome = rotation.rotate_rows(rows=stale_batch, fernets=fernets)

        assert (outcome.rewritten, outcome.retried, outcome.already_first) == (4, 1, 1)
        assert outcome.conflicts == [] and outcome.unfinished == []
        assert Connection.objects.get(name="conn-2").get_secrets() == {"api_key": EDITED_KEY}
        assert rotation.take_census() == rotation.KeyCensus(first=5, older=0)

    def test_a_row_written_under_the_old_key_meanwhile_is_rotated_on_retry(self, under_key_a, use_keys):
        # A server process still on the old list wrote it: the retry re-encrypts the fresh value.
        use_keys(KEY_B, KEY_A)
        [stale_batch] = rotation.iter_stored_secrets(batch_size=10)
        use_keys(KEY_A)
        connection_rotate_key(connection=Connection.objects.get(name="conn-0"), field="api_key",
                              value=EDITED_KEY, actor=None)
        use_keys(KEY_B, KEY_A)

        outcome = rotation.rotate_rows(rows=stale_batch, fernets=rotation.configured_fernets())

        assert (outcome.rewritten, outcome.retried) == (5, 1)
        use_keys(KEY_B)
        assert Connection.objects.get(name="conn-0").get_secrets() == {"api_key": EDITED_KEY}

    def test_a_row_deleted_meanwhile_is_skipped(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)
        [stale_batch] = rotation.iter_stored_secrets(batch_size=10)
        Connection.objects.filter(name="conn-4").delete()

        outcome = rotation.rotate_rows(rows=stale_batch, fernets=rotation.configured_fernets())

        assert (outcome.rewritten, outcome.retried, outcome.deleted_meanwhile) == (4, 1, 1)

    def test_edits_between_batches_survive(self, under_key_a, use_keys, make_connection):
        use_keys(KEY_B, KEY_A)
        edits = iter(range(100))

        def edit_a_later_row(progress: rotation.RotationProgress) -> None:
            number = next(edits)
            if number < 2:  # after batches 1 and 2, edit conn-4 and add a connection
                connection_rotate_key(connection=Connection.objects.get(name="conn-4"), field="api_key",
                                      value=f"{EDITED_KEY}-{number}", actor=None)
                make_connection(f"late-{number}")

        result = rotation.rotate_encryption_key(batch_size=2, progress=edit_a_later_row)

        assert result.complete and result.checked == 7
        use_keys(KEY_B)
        assert Connection.objects.get(name="conn-4").get_secrets() == {"api_key": f"{EDITED_KEY}-1"}
        assert rotation.take_census() == rotation.KeyCensus(first=7, older=0)

    def test_an_ordinary_save_meanwhile_keeps_the_row_readable(self, under_key_a, use_keys):
        use_keys(KEY_B, KEY_A)
        [stale_batch] = rotation.iter_stored_secrets(batch_size=10)
        described = Connection.objects.get(name="conn-1")
        described.description = "edited while rotating"
        connection_save(connection=described, actor=None)

        rotation.rotate_rows(rows=stale_batch, fernets=rotation.configured_fernets())

        use_keys(KEY_B)
        reloaded = Connection.objects.get(name="conn-1")
        assert reloaded.description == "edited while rotating"
        assert reloaded.get_secrets() == {"api_key": f"{PLANTED_KEY}-1"}


# --- Real processes on a real SQLite file ----------------------------------------------------------------


def wait_for_progress(process) -> str:
    line = process.stdout.readline()
    assert line.startswith("Checked "), line + process.stderr.read()
    return line


class TestInterruption:
    def test_kill_9_mid_run_leaves_everything_readable_and_a_rerun_finishes(self, bulk_cli):
        keys = [KEY_B, KEY_A]
        process = bulk_cli.start("rotate_encryption_key", "--batch-size", "100", "-v", "2", keys=keys)
        wait_for_progress(process)
        # Hold the write lock so the run is caught between batches, then kill it outright.
        blocker = sqlite3.connect(bulk_cli.db_path, timeout=20, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        blocker.execute("ROLLBACK")
        blocker.close()

        assert process.returncode == -signal.SIGKILL
        secrets = bulk_cli.decrypted_secrets(keys)  # raises if any value was left unreadable
        assert len(secrets) == BULK_ROWS
        assert 0 < bulk_cli.count_under(KEY_B) < BULK_ROWS

        rerun = bulk_cli.manage("rotate_encryption_key", keys=keys)
        check = bulk_cli.manage("rotate_encryption_key", "--check", keys=keys)

        assert rerun.returncode == 0, rerun.stderr
        assert check.returncode == 0 and f"Under the first key:  {BULK_ROWS}" in check.stdout
        assert bulk_cli.decrypted_secrets([KEY_B]) == secrets

    def test_kill_9_at_any_moment_leaves_everything_readable(self, bulk_cli):
        keys = [KEY_B, KEY_A]
        process = bulk_cli.start("rotate_encryption_key", "--batch-size", "50", "-v", "2", keys=keys)
        wait_for_progress(process)
        process.send_signal(signal.SIGKILL)  # most likely inside a batch's transaction
        process.wait(timeout=30)

        assert len(bulk_cli.decrypted_secrets(keys)) == BULK_ROWS
        assert bulk_cli.manage("rotate_encryption_key", keys=keys).returncode == 0
        assert bulk_cli.count_under(KEY_B) == BULK_ROWS

    def test_ctrl_c_stops_cleanly_with_a_message(self, bulk_cli):
        keys = [KEY_B, KEY_A]
        process = bulk_cli.start("rotate_encryption_key", "--batch-size", "100", "-v", "2", keys=keys)
        wait_for_progress(process)
        blocker = sqlite3.connect(bulk_cli.db_path, timeout=20, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        blocker.execute("ROLLBACK")
        blocker.close()
        _, stderr = process.communicate(timeout=60)

        assert process.returncode == 130
        assert "Interrupted after re-encrypting" in stderr and "run the command again to finish" in stderr
        assert len(bulk_cli.decrypted_secrets(keys)) == BULK_ROWS
        assert 0 < bulk_cli.count_under(KEY_B) < BULK_ROWS
        assert not audit_entries(bulk_cli)


def audit_entries(cli) -> list[tuple]:
    with sqlite3.connect(cli.db_path) as db:
        return list(db.execute(f"SELECT actor_name, action FROM {AuditEntry._meta.db_table}"))


EDIT_WHILE_ROTATING = """
import json, os, sys, time
from connections.models import Connection
from connections.services import connection_rotate_key

stop_file, result_file = sys.argv[1], sys.argv[2]
last = {}
number = 0
while not os.path.exists(stop_file) or number < 50:
    name = f"bulk-{(number * 97) % 3000:05d}"  # spread over the whole primary-key range
    value = f"sk-edited-{number:06d}-abcdefghijklmnopqrstuvwxyz"
    connection_rotate_key(connection=Connection.objects.get(name=name), field="api_key", value=value, actor=None)
    last[name] = value
    number += 1
    if number == 1:
        print("editing", flush=True)
with open(result_file, "w") as handle:
    json.dump(last, handle)
"""


class TestConcurrentEdits:
    def test_keys_edited_by_another_process_during_the_run_survive_it(self, bulk_cli, tmp_path):
        keys = [KEY_B, KEY_A]
        stop_file, result_file = tmp_path / "stop", tmp_path / "edits.json"
        editor = bulk_cli.start_python(EDIT_WHILE_ROTATING, str(stop_file), str(result_file), keys=keys)
        assert editor.stdout.readline() == "editing\n", editor.stderr.read()
        rotation_run = bulk_cli.start("rotate_encryption_key", "--batch-size", "500", keys=keys)
        stdout, stderr = rotation_run.communicate(timeout=120)
        stop_file.touch()
        _, editor_errors = editor.communicate(timeout=120)

        assert rotation_run.returncode == 0, stderr
        assert editor.returncode == 0, editor_errors
        edits = json.loads(result_file.read_text())
        assert len(edits) >= 50
        stored = bulk_cli.decrypted_secrets([KEY_B])  # everything under the new key, nothing left behind
        for name, value in edits.items():
            assert stored[name] == {"api_key": value}, name
