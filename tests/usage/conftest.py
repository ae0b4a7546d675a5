import pytest

from tests.asgi_client import AsgiClient
from usage.models import UsageHour, UsageRecord
from usage.recorder import RECORDER
from usage.services import PRICES


@pytest.fixture(autouse=True)
def empty_usage_buffer():
    """Each test starts with no call of an earlier test waiting to be written, and prices read afresh."""
    RECORDER.buffer.clear()
    PRICES.forget()
    yield
    RECORDER.buffer.clear()


@pytest.fixture
def client():
    return AsgiClient()


@pytest.fixture
def recorded(db):
    """The calls recorded so far, written as the writer thread would write them (here, on the test's thread)."""

    def written() -> list[UsageRecord]:
        RECORDER.flush()
        return list(UsageRecord.objects.order_by("id"))

    return written


@pytest.fixture
def hours(db):
    def written() -> list[UsageHour]:
        RECORDER.flush()
        return list(UsageHour.objects.order_by("id"))

    return written
