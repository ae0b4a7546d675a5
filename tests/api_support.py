"""Fixtures and helpers for the REST API tests (import the fixtures into a test module to use them)."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.conftest import PLANTED_KEY
from tokens.models import ApiToken

ALL_API_PERMISSIONS = (
    "connections.view_connection", "connections.add_connection", "connections.change_connection",
    "connections.delete_connection", "audit.view_auditentry",
    "endpoints.view_endpoint", "endpoints.add_endpoint", "endpoints.change_endpoint", "endpoints.delete_endpoint",
)


def grant(user, *perms: str) -> None:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def bearer_client(user) -> APIClient:
    """An API client that authenticates with a fresh API token of `user`."""
    _, plaintext = ApiToken.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def assert_no_secret(response, secret: str = PLANTED_KEY) -> None:
    """The secret (or any long piece of it) is nowhere in the body or the headers."""
    pieces = {secret, secret[3:-4], secret[:12], secret[-12:]}
    body = response.content.decode("utf-8", "replace") if hasattr(response, "content") else ""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for piece in pieces:
        assert piece not in body
        assert piece not in headers


@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str = "alice", *perms: str):
        user = django_user_model.objects.create_user(username, password="pw-123456-long")
        grant(user, *perms)
        return user

    return make


@pytest.fixture
def operator(make_user):
    """A non-superuser with every API permission."""
    return make_user("operator", *ALL_API_PERMISSIONS)


@pytest.fixture
def api(operator) -> APIClient:
    return bearer_client(operator)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()
