import re

import pytest

from audit.models import AuditEntry
from tokens.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db

URL = "/settings/tokens/"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-123456-long")


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_the_page_needs_a_signed_in_user(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_it_creates_a_token_and_shows_it_once(signed_in, user):
    response = signed_in.post(URL, {"expires_days": ""})

    assert response.status_code == 200
    page = response.content.decode()
    plaintext = re.search(r"llmc_[A-Za-z0-9_-]{40,}", page).group(0)
    token = ApiToken.objects.get()
    assert (token.user, token.key_hash) == (user, hash_token(plaintext))
    assert "will not be shown again" in page
    assert "no-store" in response.headers["Cache-Control"]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor) == ("token_created", user)

    listing = signed_in.get(URL).content.decode()
    assert plaintext not in listing
    assert token.prefix in listing


def test_the_list_shows_prefix_dates_and_the_buttons(signed_in, user, django_user_model):
    ApiToken.issue(user=user, expires_days=5)
    ApiToken.issue(user=django_user_model.objects.create_user("bob"))

    page = signed_in.get(URL).content.decode()

    assert "Create token" in page and ">Revoke</button>" in page
    assert page.count("<tr>") == 2  # header + alice's one token; bob's is not listed
    assert "never" in page  # last used


def test_it_refuses_a_bad_expiry(signed_in):
    response = signed_in.post(URL, {"expires_days": "0"})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_it_revokes_a_token(signed_in, user):
    token, plaintext = ApiToken.issue(user=user)

    response = signed_in.post(f"{URL}{token.pk}/revoke/", follow=True)

    assert response.status_code == 200
    assert f"Token {token.prefix}… revoked." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked and ApiToken.find(plaintext) is None
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor) == ("token_revoked", user)


def test_revoking_needs_post_and_ones_own_token(signed_in, django_user_model):
    token, _ = ApiToken.issue(user=django_user_model.objects.create_user("bob"))

    assert signed_in.get(f"{URL}{token.pk}/revoke/").status_code == 405
    assert signed_in.post(f"{URL}{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert not token.revoked
