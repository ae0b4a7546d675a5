"""The buffer between the calls and the database: bounded, written in batches, emptied at shutdown."""

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.provider_fixtures import CHAT_BODY
from usage.calls import Call
from usage.models import UsageHour, UsageRecord
from usage.recorder import RECORDER, Recorder, finish
from usage.services import write_calls


def post(client, path: str, body: object):
    return client.post(path, json.dumps(body), content_type="application/json")


def a_call(**fields) -> Call:
    return Call(at=timezone.now().timestamp(), started=0.0, status=200, **fields)


def test_past_its_bound_the_buffer_drops_the_newest_calls_and_counts_them(settings, db, caplog):
    settings.USAGE_BUFFER_CALLS = 3
    for position in range(5):
        finish(a_call(model=f"m{position}"))
    assert len(RECORDER.buffer) == 3
    dropped_before = RECORDER.dropped_reported
    RECORDER.flush()
    assert sorted(UsageRecord.objects.values_list("model", flat=True)) == ["m0", "m1", "m2"]
    assert RECORDER.dropped_reported - dropped_before == 2
    assert "2 calls were not recorded" in caplog.text


def test_the_calls_are_written_in_batches_of_the_flush_size(settings, db):
    settings.USAGE_FLUSH_CALLS = 2
    batches = []
    recorder = Recorder(lambda calls, dropped: batches.append(len(calls)), lambda calls, dropped: None)
    for _ in range(5):
        recorder.record(a_call())
    assert recorder.flush() == 5 and batches == [2, 2, 1] and not recorder.buffer


def test_stopping_writes_what_is_waiting(gateway, openai_chat):
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert UsageRecord.objects.count() == 0  # nothing written on the call's path
    RECORDER.stop()
    assert UsageRecord.objects.count() == 2 and not RECORDER.buffer


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_once_enough_calls_wait(settings):
    settings.USAGE_WRITER_THREAD = True
    settings.USAGE_FLUSH_CALLS = 3
    settings.USAGE_FLUSH_SECONDS = 3600  # only the count can wake it
    written = threading.Event()
    recorder = Recorder(lambda calls, dropped: (write_calls(calls), written.set()), lambda calls, dropped: None)
    try:
        for _ in range(3):
            recorder.record(a_call(model="by-count"))
        assert written.wait(10)
        assert UsageRecord.objects.filter(model="by-count").count() == 3
    finally:
        recorder.stop()


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_a_lone_call_after_the_interval(settings):
    settings.USAGE_WRITER_THREAD = True
    settings.USAGE_FLUSH_SECONDS = 0.05
    written = threading.Event()
    recorder = Recorder(lambda calls, dropped: (write_calls(calls), written.set()), lambda calls, dropped: None)
    try:
        recorder.record(a_call(model="by-time"))
        assert written.wait(10)
        assert UsageRecord.objects.filter(model="by-time").count() == 1
    finally:
        recorder.stop()


def test_purge_keeps_the_retention_of_records_and_of_hours(settings, db):
    settings.USAGE_RETENTION_DAYS = 7
    settings.USAGE_HOURLY_RETENTION_DAYS = 30
    now = timezone.now()
    for days in (1, 8, 40):
        call = a_call(model=f"{days}-days-ago")
        call.at = (now - timedelta(days=days)).timestamp()
        write_calls([call])
    out = StringIO()
    call_command("purge_usage", stdout=out)
    assert "Deleted 2 call records older than 7 days and 1 hourly totals older than 30 days" in out.getvalue()
    assert list(UsageRecord.objects.values_list("model", flat=True)) == ["1-days-ago"]
    assert sorted(UsageHour.objects.values_list("model", flat=True)) == ["1-days-ago", "8-days-ago"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_writers_of_several_processes_add_to_the_same_hours_without_losing_a_call():
    from django.db import connection

    start = threading.Barrier(4)
    failures = []

    def writer(offset: int) -> None:
        try:
            start.wait(10)
            for batch in range(10):
                # The same hours and keys in every writer, in a different order each time.
                write_calls([a_call(endpoint_id=1 + (n + offset + batch) % 5, token_id=1 + n % 3, latency_ms=n)
                             for n in range(50)])
        except Exception as error:  # reported below, with the thread's failure
            failures.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert UsageRecord.objects.count() == 4 * 10 * 50
    assert sum(UsageHour.objects.values_list("calls", flat=True)) == 4 * 10 * 50
