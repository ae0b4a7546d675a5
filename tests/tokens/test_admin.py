import pytest

from tokens.models import ApiToken

pytestmark = pytest.mark.django_db


def test_the_admin_shows_the_prefix_never_the_hash(client, admin_user):
    token, plaintext = ApiToken.issue(user=admin_user)
    client.force_login(admin_user)

    listing = client.get("/admin/tokens/apitoken/").content.decode()
    change = client.get(f"/admin/tokens/apitoken/{token.pk}/change/").content.decode()

    for page in (listing, change):
        assert token.prefix in page
        assert token.key_hash not in page and plaintext not in page
    assert client.get("/admin/tokens/apitoken/add/").status_code == 403


def test_the_admin_revokes_through_the_service(client, admin_user):
    token, _ = ApiToken.issue(user=admin_user)
    client.force_login(admin_user)

    client.post("/admin/tokens/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})

    token.refresh_from_db()
    assert token.revoked
