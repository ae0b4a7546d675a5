"""The session store reads what Django's database store wrote, under the same expiry rule."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from core.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_a_session_reads_back_as_djangos_store_reads_it():
    written = DjangoSessionStore()
    written.update({"_auth_user_id": "7", "note": "é & <b>"})
    written.create()
    for store in (SessionStore(written.session_key), DjangoSessionStore(written.session_key)):
        assert store.load() == {"_auth_user_id": "7", "note": "é & <b>"}
        assert store.session_key == written.session_key


def test_an_expired_or_unknown_session_is_empty_and_gets_a_new_key():
    written = SessionStore()
    written["note"] = "kept"
    written.create()
    Session.objects.filter(session_key=written.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    for key in (written.session_key, "no-such-session-key"):
        store = SessionStore(key)
        assert store.load() == {}
        assert store.session_key is None
        assert store.get("note") is None


def test_the_settings_pages_use_it(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(user)
    assert isinstance(client.session, SessionStore)
    assert client.get("/settings/connections/").status_code == 200
    Session.objects.all().update(expire_date=timezone.now() - timedelta(seconds=1))
    assert client.get("/settings/connections/").status_code == 302  # signed out: to the login page
