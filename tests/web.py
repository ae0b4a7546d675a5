"""Helpers for tests of the settings pages: users holding exactly the Django model permissions a test names."""

from django.contrib.auth.models import Permission
from django.test import Client


def login_with_perms(client: Client, user_model, *perms: str, username: str = "limited") -> Client:
    """Sign `client` in as a new non-superuser holding `perms` ("connections.view_connection", …) and no others."""
    user = user_model.objects.create_user(username, password="pw-limited-123456")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return client
