import hashlib
from datetime import timedelta

import pytest
from django.db import connection as db
from django.utils import timezone

from tokens.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-123456-long")


def test_a_token_is_random_prefixed_and_stored_only_as_its_sha256(user):
    token, plaintext = ApiToken.issue(user=user)
    _, other = ApiToken.issue(user=user)

    assert plaintext.startswith("llmc_") and len(plaintext) >= 40 and plaintext != other
    assert token.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.prefix == plaintext[:11]
    assert plaintext not in repr(token) and plaintext not in str(token)
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM tokens_apitoken")
        rows = repr(cursor.fetchall())
    assert plaintext not in rows and plaintext[11:] not in rows


def test_find_returns_only_usable_tokens(user):
    token, plaintext = ApiToken.issue(user=user)
    expired, expired_plain = ApiToken.issue(user=user, expires_days=1)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_plain = ApiToken.issue(user=user)
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    assert ApiToken.find(plaintext) == token
    assert ApiToken.find(expired_plain) is None
    assert ApiToken.find(revoked_plain) is None
    assert ApiToken.find(plaintext + "x") is None
    assert ApiToken.find(plaintext[5:]) is None
    assert ApiToken.find("") is None


def test_an_inactive_users_token_is_refused(user):
    _, plaintext = ApiToken.issue(user=user)
    user.is_active = False
    user.save()

    assert ApiToken.find(plaintext) is None


def test_expiry_is_set_in_days(user):
    token, _ = ApiToken.issue(user=user, expires_days=30)

    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert token.status == "Active"


def test_touch_writes_at_most_once_a_minute(user, django_assert_num_queries):
    token, _ = ApiToken.issue(user=user)

    with django_assert_num_queries(1):
        token.touch()
    first = ApiToken.objects.get().last_used_at
    with django_assert_num_queries(0):
        token.touch()
    assert ApiToken.objects.get().last_used_at == first

    token.last_used_at -= timedelta(seconds=61)
    ApiToken.objects.update(last_used_at=token.last_used_at)
    with django_assert_num_queries(1):
        token.touch()
    assert ApiToken.objects.get().last_used_at > first
