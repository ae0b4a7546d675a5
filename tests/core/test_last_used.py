"""last_used_at: at most one write a minute per connection, and none while the loaded value is fresh."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection
from core.last_used import touch_last_used

pytestmark = pytest.mark.django_db


def test_the_first_use_is_recorded_with_one_update(make_connection, django_assert_num_queries):
    connection = make_connection()
    now = timezone.now()

    with django_assert_num_queries(1):
        assert touch_last_used(connection, now=now) is True

    assert Connection.objects.get(pk=connection.pk).last_used_at == now


def test_uses_within_a_minute_cost_no_query(make_connection, django_assert_num_queries):
    connection = make_connection()
    now = timezone.now()
    touch_last_used(connection, now=now)

    with django_assert_num_queries(0):
        for seconds in (1, 30, 59):
            assert touch_last_used(connection, now=now + timedelta(seconds=seconds)) is False


def test_a_use_after_a_minute_is_recorded_again(make_connection):
    connection = make_connection()
    now = timezone.now()
    touch_last_used(connection, now=now)

    assert touch_last_used(connection, now=now + timedelta(seconds=61)) is True
    assert Connection.objects.get(pk=connection.pk).last_used_at == now + timedelta(seconds=61)


def test_a_stale_copy_does_not_write_when_another_process_just_did(make_connection, django_assert_num_queries):
    connection = make_connection()
    now = timezone.now()
    stale_copy = Connection.objects.get(pk=connection.pk)  # loaded before the other process's write
    touch_last_used(connection, now=now)

    with django_assert_num_queries(1):  # one conditional UPDATE that matches nothing
        assert touch_last_used(stale_copy, now=now + timedelta(seconds=5)) is False

    assert Connection.objects.get(pk=connection.pk).last_used_at == now


def test_recording_a_use_changes_nothing_else(make_connection):
    connection = make_connection()
    before = Connection.objects.get(pk=connection.pk)

    touch_last_used(connection)

    after = Connection.objects.get(pk=connection.pk)
    assert (after.updated_at, after.secrets_updated_at, after.audit_entries().count()) == (
        before.updated_at, before.secrets_updated_at, before.audit_entries().count())
