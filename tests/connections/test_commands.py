"""Management commands: rotate_connection_key, generate_encryption_key, list_connections (and the command
surface of rotate_encryption_key; its re-encryption is in test_rotation.py). Each runs through
`call_command` and as a real `python manage.py` child process."""

from datetime import timedelta
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from connections.models import Connection
from tests.conftest import PLANTED_KEY

from .conftest import KEY_A, KEY_B, KEY_C, run_on_terminal

NEW_KEY = "sk-new-ROTATED-9876543210-zyxwvuTSRQ"
SERVICE_ACCOUNT = (
    '{"type": "service_account", "client_email": "bot@proj.iam.gserviceaccount.com", '
    '"private_key": "-----BEGIN PRIVATE KEY-----\\nPLANTEDPRIVATE\\n-----END PRIVATE KEY-----\\n"}'
)


def rotate(*args: str, stdin: str | StringIO = NEW_KEY, **options) -> str:
    out = StringIO()
    stdin = StringIO(stdin) if isinstance(stdin, str) else stdin
    call_command("rotate_connection_key", *args, stdin=stdin, stdout=out, stderr=out, **options)
    return out.getvalue()


def refusal(*args: str, stdin: str | StringIO = NEW_KEY) -> str:
    with pytest.raises(CommandError) as raised:
        rotate(*args, stdin=stdin)
    return str(raised.value)


# --- rotate_connection_key through call_command ---------------------------------------------------------


@pytest.mark.django_db
class TestRotateConnectionKey:
    def test_it_replaces_the_key_and_prints_the_mask_and_the_endpoints(self, make_connection, make_endpoint):
        connection = make_connection("openai-prod")
        make_endpoint("chat-main", connection)
        make_endpoint("embed-main", connection, model="text-embedding-3-small", task="embeddings")

        output = rotate("openai-prod")

        assert "sk-...TSRQ" in output
        assert "Endpoints now using it (2): chat-main, embed-main" in output
        assert NEW_KEY not in output and PLANTED_KEY not in output
        connection.refresh_from_db()
        assert connection.get_secrets() == {"api_key": NEW_KEY}

    def test_endpoints_read_the_new_key_without_being_changed(self, make_connection, make_endpoint):
        endpoint = make_endpoint("chat-main", make_connection("openai-prod"))
        endpoint_updated_at = endpoint.updated_at

        rotate("openai-prod")

        endpoint.refresh_from_db()
        assert endpoint.updated_at == endpoint_updated_at
        assert endpoint.destinations.get().connection.get_secrets()["api_key"] == NEW_KEY

    def test_it_records_a_key_rotation_by_system(self, make_connection):
        make_connection("openai-prod")

        rotate("openai-prod")

        entry = AuditEntry.objects.get(action=AuditEntry.Action.KEY_ROTATED)
        assert (entry.actor, entry.actor_name, entry.connection_name) == (None, "system", "openai-prod")
        assert entry.fields == ["secrets.api_key"]

    def test_it_records_the_user_named_with_user(self, make_connection, django_user_model):
        alice = django_user_model.objects.create_user("alice", password="pw-alice-123456")
        connection = make_connection("openai-prod")

        rotate("openai-prod", user="alice")

        entry = AuditEntry.objects.get(action=AuditEntry.Action.KEY_ROTATED)
        assert (entry.actor, entry.actor_name) == (alice, "alice")
        connection.refresh_from_db()
        assert connection.updated_by == alice

    def test_it_trims_the_trailing_newline_of_piped_input(self, make_connection):
        connection = make_connection("openai-prod")

        rotate("openai-prod", stdin=f"{NEW_KEY}\n")

        connection.refresh_from_db()
        assert connection.get_secrets() == {"api_key": NEW_KEY}

    def test_field_picks_one_secret_of_several(self, make_connection):
        connection = make_connection(
            "bedrock-prod", "bedrock", "access_key",
            secrets={"aws_access_key_id": "AKIAPLANTED0000000000", "aws_secret_access_key": PLANTED_KEY},
            config={"region": "us-east-1"},
        )

        output = rotate("bedrock-prod", field="aws_secret_access_key")

        assert "Secret access key" in output and "sk-...TSRQ" in output
        connection.refresh_from_db()
        assert connection.get_secrets() == {
            "aws_access_key_id": "AKIAPLANTED0000000000",
            "aws_secret_access_key": NEW_KEY,
        }

    def test_a_service_account_key_is_validated_and_shown_by_its_email(self, make_connection):
        make_connection(
            "vertex", "vertex_ai", "service_account",
            secrets={"service_account_json": SERVICE_ACCOUNT.replace("bot@", "old@")},
            config={"project_id": "my-project-123"},
        )

        output = rotate("vertex", stdin=SERVICE_ACCOUNT + "\n")

        assert "service account bot@proj.iam.gserviceaccount.com" in output
        assert "PLANTEDPRIVATE" not in output

    def test_it_repairs_a_connection_whose_secrets_cannot_be_decrypted(self, make_connection, use_keys):
        use_keys(KEY_C)
        make_connection("openai-prod")
        use_keys(KEY_A)

        output = rotate("openai-prod")

        assert "sk-...TSRQ" in output
        assert Connection.objects.get(name="openai-prod").get_secrets() == {"api_key": NEW_KEY}

    def test_the_same_value_again_changes_nothing(self, make_connection):
        make_connection("openai-prod")

        output = rotate("openai-prod", stdin=PLANTED_KEY)

        assert "already had that value; nothing changed" in output
        assert PLANTED_KEY not in output
        assert not AuditEntry.objects.filter(action=AuditEntry.Action.KEY_ROTATED).exists()

    # Refusals: each exits 1 (CommandError), changes nothing and never shows the value.

    def test_it_refuses_an_unknown_connection_without_echoing_the_name(self, make_connection):
        make_connection("openai-prod")

        message = refusal(PLANTED_KEY)  # someone pasted the key where the name goes

        assert "No connection has that name" in message
        assert PLANTED_KEY not in message

    def test_it_refuses_an_unknown_field(self, make_connection):
        make_connection("openai-prod")

        message = refusal("openai-prod", "--field", "client_secret")

        assert "Unknown --field" in message and "expected: api_key" in message
        assert_unchanged("openai-prod")

    def test_it_asks_for_field_when_the_method_has_several(self, make_connection):
        make_connection(
            "bedrock-prod", "bedrock", "access_key",
            secrets={"aws_access_key_id": "AKIAPLANTED0000000000", "aws_secret_access_key": PLANTED_KEY},
            config={"region": "us-east-1"},
        )

        message = refusal("bedrock-prod")

        assert "choose one with --field (aws_access_key_id, aws_secret_access_key, aws_session_token)" in message

    def test_it_refuses_a_method_without_secrets(self, make_connection):
        make_connection("ollama-local", "ollama", "none", secrets={})

        assert "has no secret to rotate" in refusal("ollama-local")

    @pytest.mark.parametrize("stdin", ["", "\n", "   \n\t"])
    def test_it_refuses_an_empty_value(self, make_connection, stdin):
        make_connection("openai-prod")

        assert "Empty value" in refusal("openai-prod", stdin=stdin)
        assert_unchanged("openai-prod")

    def test_it_refuses_an_invalid_value_through_the_registry(self, make_connection):
        make_connection("openai-prod")

        message = refusal("openai-prod", stdin="sk-...abcd")  # an echoed mask

        assert "looks like the masked value" in message
        assert_unchanged("openai-prod")

    def test_it_refuses_a_value_that_is_too_long(self, make_connection):
        make_connection("openai-prod")

        message = refusal("openai-prod", stdin="sk-" + "x" * 20_000)

        assert "longer than 16 KiB" in message and "xxxxxxxx" not in message
        assert_unchanged("openai-prod")

    def test_it_refuses_an_unknown_user(self, make_connection):
        make_connection("openai-prod")

        assert "No user has the username" in refusal("openai-prod", "--user", "nobody")
        assert_unchanged("openai-prod")

    def test_it_never_takes_the_value_from_arguments(self, make_connection):
        make_connection("openai-prod")

        message = refusal("openai-prod", NEW_KEY)

        assert "never taken from the command line" in message
        assert NEW_KEY not in message
        assert_unchanged("openai-prod")

    def test_an_edit_made_while_it_waits_for_the_value_survives(self, make_connection):
        make_connection("bedrock-prod", "bedrock", "access_key", config={"region": "us-east-1"},
                        secrets={"aws_access_key_id": "AKIAOLD0000000000000", "aws_secret_access_key": PLANTED_KEY})

        def edit_meanwhile() -> None:  # someone else edits another field while the operator types
            connection = Connection.objects.get(name="bedrock-prod")
            connection.update_secrets({"aws_secret_access_key": "edited-secret-1111111111"})
            connection.description = "edited meanwhile"
            connection.save()

        rotate("bedrock-prod", "--field", "aws_access_key_id",
               stdin=CallbackStdin("AKIANEW1111111111111", before_reading=edit_meanwhile))

        stored = Connection.objects.get(name="bedrock-prod")
        assert stored.get_secrets() == {"aws_access_key_id": "AKIANEW1111111111111",
                                        "aws_secret_access_key": "edited-secret-1111111111"}
        assert stored.description == "edited meanwhile"

    def test_a_connection_deleted_while_it_waits_for_the_value_is_reported(self, make_connection):
        make_connection("openai-prod")

        def delete_meanwhile() -> None:
            Connection.objects.filter(name="openai-prod").delete()

        message = refusal("openai-prod", stdin=CallbackStdin(NEW_KEY, before_reading=delete_meanwhile))

        assert "was deleted" in message and NEW_KEY not in message


class CallbackStdin(StringIO):
    """Piped input that runs `before_reading` when the command reads it: another edit lands in between."""

    def __init__(self, value: str, *, before_reading):
        super().__init__(value)
        self.before_reading = before_reading

    def read(self, *args) -> str:
        self.before_reading()
        return super().read(*args)


def assert_unchanged(name: str) -> None:
    assert Connection.objects.get(name=name).get_secrets() == {"api_key": PLANTED_KEY}
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.KEY_ROTATED).exists()


# --- generate_encryption_key and list_connections through call_command -----------------------------------


def test_generate_encryption_key_prints_only_a_fresh_fernet_key():
    first, second = StringIO(), StringIO()
    call_command("generate_encryption_key", stdout=first)
    call_command("generate_encryption_key", stdout=second)

    key = first.getvalue()
    assert key.endswith("\n") and key.count("\n") == 1
    Fernet(key.strip())
    assert key != second.getvalue()


@pytest.mark.django_db
class TestListConnections:
    def list_output(self) -> str:
        out = StringIO()
        call_command("list_connections", stdout=out)
        return out.getvalue()

    def test_it_shows_masks_endpoint_counts_and_last_updated(self, make_connection, make_endpoint):
        prod = make_connection("openai-prod")
        make_endpoint("chat-main", prod)
        make_endpoint("chat-other", prod, enabled=False)
        make_connection("ollama-local", "ollama", "none", secrets={})

        lines = self.list_output().splitlines()

        assert lines[0].split() == ["NAME", "PROVIDER", "CREDENTIALS", "ENDPOINTS", "LAST", "UPDATED", "KEY", "AGE",
                                    "DUE", "ROTATION"]
        assert lines[1].split()[-3:] == ["-", "-", "no_key"]
        assert lines[2].split()[-3:] == ["0d", f"{prod.key_due_at:%Y-%m-%d}", "ok"]
        assert lines[1].split()[:4] == ["ollama-local", "ollama", "no", "credentials"]
        assert lines[2].split()[:4] == ["openai-prod", "openai", "sk-...WXYZ", "2"]
        assert f"{prod.secrets_updated_at:%Y-%m-%d %H:%M} UTC" in lines[2]
        assert PLANTED_KEY not in "\n".join(lines)

    def test_it_lists_an_undecryptable_connection_instead_of_failing(self, make_connection, use_keys):
        use_keys(KEY_C)
        make_connection("lost-key")
        use_keys(KEY_A)
        make_connection("openai-prod")

        output = self.list_output()

        assert "lost-key" in output and "cannot be decrypted" in output
        assert "sk-...WXYZ" in output

    def test_it_says_when_there_is_nothing_to_list(self):
        assert self.list_output() == "No connections yet.\n"

    def test_overdue_lists_only_overdue_keys_and_exits_with_status_3(self, make_connection):
        make_connection("fresh")
        make_connection("old")
        make_connection("strict", key_max_age_days=7)
        make_connection("keyless", "ollama", "none", secrets={})
        age("old", days=91)
        age("strict", days=8)
        age("keyless", days=400)
        out = StringIO()

        with pytest.raises(CommandError) as raised:
            call_command("list_connections", "--overdue", stdout=out)

        assert raised.value.returncode == 3
        assert "2 connection(s) overdue" in str(raised.value)
        names = [line.split()[0] for line in out.getvalue().splitlines()[1:]]
        assert names == ["old", "strict"]
        assert all(line.split()[-1] == "overdue" for line in out.getvalue().splitlines()[1:])

    def test_overdue_exits_0_when_nothing_is_overdue(self, make_connection, settings):
        make_connection("nearly")
        age("nearly", days=89)
        out = StringIO()

        call_command("list_connections", "--overdue", stdout=out)

        assert out.getvalue() == "No connection is overdue for key rotation.\n"
        settings.KEY_MAX_AGE_DAYS = 30
        with pytest.raises(CommandError) as raised:
            call_command("list_connections", "--overdue", stdout=StringIO())
        assert raised.value.returncode == 3

    def test_it_costs_one_query_however_many_rows(self, make_connection, make_endpoint, django_assert_num_queries):
        for number in range(30):
            connection = make_connection(f"conn-{number:02d}")
            make_endpoint(f"endpoint-{number:02d}-a", connection)
            make_endpoint(f"endpoint-{number:02d}-b", connection)

        with django_assert_num_queries(1):
            output = self.list_output()

        assert output.count("sk-...WXYZ") == 30


# --- rotate_encryption_key's command surface --------------------------------------------------------------


class TtyStringIO(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
class TestRotateEncryptionKeyOutput:
    def test_it_draws_a_progress_bar_on_a_terminal(self, make_connection, use_keys):
        for number in range(5):
            make_connection(f"conn-{number}")
        use_keys(KEY_B, KEY_A)
        out = TtyStringIO()

        call_command("rotate_encryption_key", "--batch-size", "2", stdout=out)

        assert out.getvalue().count("\r[") == 3
        assert "[##############################] 5/5 checked, 5 re-encrypted\n" in out.getvalue()

    def test_it_prints_a_plain_count_elsewhere(self, make_connection, use_keys):
        for number in range(5):
            make_connection(f"conn-{number}")
        use_keys(KEY_B, KEY_A)
        out = StringIO()

        call_command("rotate_encryption_key", "--batch-size", "2", verbosity=2, stdout=out)

        assert "\r" not in out.getvalue()
        assert "Checked 2 of 5, re-encrypted 2\nChecked 4 of 5, re-encrypted 4\nChecked 5 of 5" in out.getvalue()
        assert "Re-encrypted 5 of 5 connection(s) under the first key (0 already were)." in out.getvalue()
        assert PLANTED_KEY not in out.getvalue()

    def test_check_and_dry_run_exclude_each_other(self):
        with pytest.raises(CommandError, match="not allowed with argument"):
            call_command("rotate_encryption_key", "--check", "--dry-run")

    def test_it_refuses_a_batch_size_below_one(self):
        with pytest.raises(CommandError, match="--batch-size"):
            call_command("rotate_encryption_key", "--batch-size", "0")


# --- The same commands as real processes ----------------------------------------------------------------


def assert_no_secret(result) -> None:
    for value in (PLANTED_KEY, NEW_KEY):
        assert value not in result.stdout and value not in result.stderr


class TestRotateConnectionKeyProcess:
    def test_piped_value_rotates_the_key(self, cli):
        result = cli.manage("rotate_connection_key", "openai-prod", "--user", "alice", stdin=NEW_KEY + "\n")

        assert result.returncode == 0, result.stderr
        assert "Rotated the API key of connection 'openai-prod': now sk-...TSRQ" in result.stdout
        assert "Endpoints now using it (2): chat-main, embed-main" in result.stdout
        assert_no_secret(result)
        assert cli.decrypted_secrets([KEY_A])["openai-prod"] == {"api_key": NEW_KEY}

    @pytest.mark.parametrize(
        ("args", "stdin", "message"),
        [
            (["no-such-connection"], NEW_KEY, "No connection has that name"),
            ([PLANTED_KEY], NEW_KEY, "No connection has that name"),
            (["openai-prod", "--field", "token"], NEW_KEY, "Unknown --field"),
            (["bedrock-prod"], NEW_KEY, "choose one with --field"),
            (["ollama-local"], NEW_KEY, "has no secret to rotate"),
            (["openai-prod"], "", "Empty value"),
            (["openai-prod"], "  \n", "Empty value"),
            (["openai-prod"], "sk-...abcd", "looks like the masked value"),
            (["openai-prod", "--user", "nobody"], NEW_KEY, "No user has the username"),
        ],
    )
    def test_each_refusal_exits_1_and_changes_nothing(self, cli, args, stdin, message):
        before = cli.raw_secrets()

        result = cli.manage("rotate_connection_key", *args, stdin=stdin)

        assert result.returncode == 1
        assert message in result.stderr
        assert_no_secret(result)
        assert cli.raw_secrets() == before

    def test_a_value_given_as_an_argument_is_refused_and_not_echoed(self, cli):
        before = cli.raw_secrets()

        result = cli.manage("rotate_connection_key", "openai-prod", NEW_KEY)

        assert result.returncode == 2  # a usage error, as argparse reports them
        assert "never taken from the command line" in result.stderr
        assert_no_secret(result)
        assert cli.raw_secrets() == before

    def test_a_value_in_the_environment_is_ignored(self, cli):
        # Only stdin counts: an environment variable with a likely name must not be picked up.
        likely_names = {"NEW_KEY": NEW_KEY, "API_KEY": NEW_KEY, "SECRET": NEW_KEY, "VALUE": NEW_KEY}

        result = cli.manage("rotate_connection_key", "openai-prod", stdin="", extra_env=likely_names)

        assert result.returncode == 1 and "Empty value" in result.stderr

    def test_on_a_terminal_it_asks_twice_without_echoing(self, cli):
        code, screen = run_on_terminal(cli, ["rotate_connection_key", "openai-prod"], [NEW_KEY, NEW_KEY])

        assert code == 0, screen
        assert "New API key for 'openai-prod': " in screen and "Repeat it: " in screen
        assert "now sk-...TSRQ" in screen
        assert NEW_KEY not in screen and PLANTED_KEY not in screen
        assert cli.decrypted_secrets([KEY_A])["openai-prod"] == {"api_key": NEW_KEY}

    def test_on_a_terminal_a_mismatch_changes_nothing(self, cli):
        before = cli.raw_secrets()

        code, screen = run_on_terminal(
            cli, ["rotate_connection_key", "openai-prod"], [NEW_KEY, NEW_KEY + "-typo"]
        )

        assert code == 1
        assert "did not match" in screen and NEW_KEY not in screen
        assert cli.raw_secrets() == before

    def test_on_a_terminal_an_empty_entry_is_refused(self, cli):
        code, screen = run_on_terminal(cli, ["rotate_connection_key", "openai-prod"], [""])

        assert code == 1 and "Empty value" in screen


def age(name: str, *, days: int) -> None:
    """Make a connection's key `days` old, as if set then (through save(), which keeps the due date)."""
    connection = Connection.objects.get(name=name)
    connection.secrets_updated_at = timezone.now() - timedelta(days=days)
    connection.save(update_fields=["secrets_updated_at"])


def test_list_connections_overdue_process_exit_status_is_for_cron(cli):
    ok = cli.manage("list_connections", "--overdue")
    cli.python(
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from connections.models import Connection\n"
        "c = Connection.objects.get(name='openai-prod')\n"
        "c.secrets_updated_at = timezone.now() - timedelta(days=120)\n"
        "c.save(update_fields=['secrets_updated_at'])\n"
    )
    overdue = cli.manage("list_connections", "--overdue")
    lenient = cli.manage("list_connections", "--overdue", extra_env={"KEY_MAX_AGE_DAYS": "365"})

    assert ok.returncode == 0 and "No connection is overdue" in ok.stdout
    assert overdue.returncode == 3
    assert overdue.stdout.splitlines()[1].split()[0] == "openai-prod" and len(overdue.stdout.splitlines()) == 2
    assert "1 connection(s) overdue for key rotation" in overdue.stderr
    assert lenient.returncode == 0
    assert_no_secret(overdue)


def test_generate_encryption_key_process(cli):
    result = cli.manage("generate_encryption_key")

    assert result.returncode == 0
    Fernet(result.stdout.strip())
    assert result.stdout.count("\n") == 1 and result.stderr == ""


def test_list_connections_process(cli):
    with_lost_key = cli.manage("list_connections", keys=[KEY_C])
    result = cli.manage("list_connections")

    assert result.returncode == 0 and with_lost_key.returncode == 0
    assert "openai-prod   openai    sk-...WXYZ" in result.stdout
    assert "2" in result.stdout.splitlines()[3].split()
    assert with_lost_key.stdout.count("cannot be decrypted") == 3  # even the empty dict is ciphertext
    assert_no_secret(result)


class TestRotateEncryptionKeyProcess:
    def test_check_rotate_check(self, cli):
        keys = [KEY_B, KEY_A]

        before = cli.manage("rotate_encryption_key", "--check", keys=keys)
        dry = cli.manage("rotate_encryption_key", "--dry-run", keys=keys)
        rotated = cli.manage("rotate_encryption_key", keys=keys)
        after = cli.manage("rotate_encryption_key", "--check", keys=keys)
        only_new = cli.manage("list_connections", keys=[KEY_B])

        assert before.returncode == 1 and "Under an older key:   3" in before.stdout
        assert "still use an older key" in before.stderr
        assert dry.returncode == 0 and "Would re-encrypt 3 of 3" in dry.stdout
        assert rotated.returncode == 0, rotated.stderr
        assert "Re-encrypted 3 of 3" in rotated.stdout
        assert after.returncode == 0 and "Under the first key:  3" in after.stdout
        assert "cannot be decrypted" not in only_new.stdout and "sk-...WXYZ" in only_new.stdout
        for result in (before, dry, rotated, after, only_new):
            assert_no_secret(result)

    def test_a_value_no_key_decrypts_makes_it_exit_1_and_change_nothing(self, cli):
        cli.python(CORRUPT_ONE, KEY_C, keys=[KEY_A])  # bedrock-prod now under a key nobody has
        before = cli.raw_secrets()

        check = cli.manage("rotate_encryption_key", "--check", keys=[KEY_B, KEY_A])
        dry = cli.manage("rotate_encryption_key", "--dry-run", keys=[KEY_B, KEY_A])
        result = cli.manage("rotate_encryption_key", keys=[KEY_B, KEY_A])

        assert check.returncode == 1 and "Cannot be decrypted:  1" in check.stdout
        assert dry.returncode == 1 and "bedrock-prod" in dry.stderr
        assert result.returncode == 1
        assert "cannot be decrypted with any configured FIELD_ENCRYPTION_KEY: bedrock-prod" in result.stderr
        assert "Nothing was changed" in result.stderr
        assert cli.raw_secrets() == before

    def test_a_bad_batch_size_is_a_usage_error(self, cli):
        result = cli.manage("rotate_encryption_key", "--batch-size", "0")

        assert result.returncode == 2 and "--batch-size" in result.stderr

    def test_it_draws_a_bar_on_a_real_terminal(self, cli):
        code, screen = run_on_terminal(cli, ["rotate_encryption_key"], [], keys=[KEY_B, KEY_A])

        assert code == 0, screen
        assert "\r[##############################] 3/3 checked, 3 re-encrypted" in screen


CORRUPT_ONE = """
import sys
from cryptography.fernet import Fernet
from django.db import connection
from connections.models import Connection

token = Fernet(sys.argv[1]).encrypt(b'{"api_key": "sk-under-a-lost-key-000000000"}').decode()
with connection.cursor() as cursor:
    cursor.execute(f"UPDATE {Connection._meta.db_table} SET secrets = %s WHERE name = 'bedrock-prod'", [token])
"""

