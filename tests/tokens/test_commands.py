from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from tokens.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-123456-long")


def test_it_prints_only_the_token_and_a_newline(user):
    out = StringIO()

    call_command("create_api_token", "alice", stdout=out)

    printed = out.getvalue()
    assert printed.endswith("\n") and printed.count("\n") == 1
    plaintext = printed.strip()
    assert plaintext.startswith("llmc_")
    token = ApiToken.objects.get()
    assert (token.user, token.key_hash, token.expires_at) == (user, hash_token(plaintext), None)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_name) == ("token_created", "system")
    assert f"token {token.prefix}" in entry.fields and plaintext not in repr(entry.fields)


def test_it_sets_an_expiry(user):
    call_command("create_api_token", "alice", "--expires-days", "7", stdout=StringIO())

    left = ApiToken.objects.get().expires_at - timezone.now()
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)


@pytest.mark.parametrize("args", [["nobody"], ["alice", "--expires-days", "0"], ["alice", "--expires-days", "x"]])
def test_it_refuses_bad_arguments(user, args):
    with pytest.raises(CommandError):
        call_command("create_api_token", *args, stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("days", ["0", "-1", "3651", "99999999", "1e3", "7.5", ""])
def test_expiry_has_the_pages_bounds_and_says_them(user, days):
    with pytest.raises(CommandError) as refused:
        call_command("create_api_token", "alice", "--expires-days", days, stdout=StringIO(), stderr=StringIO())

    assert "--expires-days: a whole number of days from 1 to 3650" in str(refused.value)
    assert not ApiToken.objects.exists()


def test_the_longest_expiry_the_page_allows_is_allowed(user):
    call_command("create_api_token", "alice", "--expires-days", "3650", stdout=StringIO())

    assert ApiToken.objects.get().expires_at - timezone.now() > timedelta(days=3649)


def test_the_command_and_the_page_share_one_rule():
    from tokens.forms import TokenCreateForm
    from tokens.models import EXPIRES_DAYS_MAX, EXPIRES_DAYS_MIN

    assert (EXPIRES_DAYS_MIN, EXPIRES_DAYS_MAX) == (1, 3650)
    assert not TokenCreateForm({"expires_days": "3651"}).is_valid()
    assert TokenCreateForm({"expires_days": "3650"}).is_valid()
