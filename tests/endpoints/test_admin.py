"""The endpoint admin edits destinations inline, under the model's rules, through the service (audited)."""

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from endpoints.models import Endpoint

pytestmark = pytest.mark.django_db


def inline(rows: list[dict], initial: int = 0) -> dict:
    data = {"destinations-TOTAL_FORMS": str(len(rows)), "destinations-INITIAL_FORMS": str(initial),
            "destinations-MIN_NUM_FORMS": "0", "destinations-MAX_NUM_FORMS": "10"}
    for index, row in enumerate(rows):
        data.update({f"destinations-{index}-{name}": value for name, value in row.items()})
    return data


def form(rows: list[dict], **fields) -> dict:
    # As the admin's page posts it: the budget period's select always sends its value.
    return {"name": "chat", "task": "chat", "enabled": "on", "fallback_on": ["rate_limited", "server_error"],
            "deadline_seconds": "60", "budget_period": "month", **inline(rows), **fields}


@pytest.fixture
def two(make_connection):
    return make_connection("openai-prod"), make_connection("backup")


def test_the_admin_adds_an_endpoint_with_a_split_and_a_fallback(admin_client, two):
    primary, backup = two
    response = admin_client.post(reverse("admin:endpoints_endpoint_add"), form([
        {"connection": backup.pk, "model": "gpt-4o", "role": "fallback", "weight": "", "position": "5"},
        {"connection": primary.pk, "model": "gpt-4o-mini", "role": "primary", "weight": "60", "position": "1"},
        {"connection": backup.pk, "model": "gpt-4o-mini", "role": "primary", "weight": "40", "position": "2"},
    ]))

    assert response.status_code == 302, response.content.decode()[:3000]
    endpoint = Endpoint.objects.get()
    assert [(d.connection.name, d.model, d.role, d.weight) for d in endpoint.destinations.order_by("position")] == [
        ("openai-prod", "gpt-4o-mini", "primary", 60), ("backup", "gpt-4o-mini", "primary", 40),
        ("backup", "gpt-4o", "fallback", None)]
    entry = AuditEntry.objects.get(subject_type="endpoint")
    assert entry.action == "created" and "destinations" in entry.fields
    page = admin_client.get(reverse("admin:endpoints_endpoint_changelist")).content.decode()
    assert "openai-prod 60% · backup 40%, then backup" in page


def test_the_admin_refuses_weights_that_do_not_add_up(admin_client, two):
    primary, backup = two
    response = admin_client.post(reverse("admin:endpoints_endpoint_add"), form([
        {"connection": primary.pk, "model": "m", "role": "primary", "weight": "60", "position": "1"},
        {"connection": backup.pk, "model": "m", "role": "primary", "weight": "30", "position": "2"},
    ]))

    assert response.status_code == 200
    assert "weights add up to 90; they must add up to 100" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_the_admin_change_page_shows_the_rows(admin_client, two, make_endpoint):
    primary, backup = two
    endpoint = make_endpoint("chat", primary, fallbacks=((backup, "gpt-4o"),))
    page = admin_client.get(reverse("admin:endpoints_endpoint_change", args=[endpoint.pk])).content.decode()
    assert page.count('name="destinations-') > 10 and "gpt-4o" in page
