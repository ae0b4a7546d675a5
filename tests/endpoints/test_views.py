"""The Endpoints tab: list, create, edit, delete and permissions."""

import pytest
from django.test import Client

from connections.models import Connection
from endpoints.models import Destination, Endpoint
from tests.conftest import PLANTED_KEY, bulk_endpoints
from tests.web import login_with_perms

pytestmark = pytest.mark.django_db

LIST_URL = "/settings/endpoints/"
CREATE_URL = "/settings/endpoints/new/"


def endpoint_data(chosen: Connection, **fields) -> dict:
    """The form as a browser without scripts posts it: one destination row (and its Order), no existing rows."""
    row = {key: fields.pop(key) for key in ("connection", "model", "role", "weight") if key in fields}
    data = {"name": "chat-main", "task": "chat", "enabled": "on", "fallback_on": ["rate_limited", "server_error"],
            "deadline_seconds": "120", **management(1, 0)}
    data.update(destination_row(0, connection=row.get("connection", chosen.pk), model=row.get("model", "gpt-4o-mini"),
                                role=row.get("role", "primary"), weight=row.get("weight", 100)))
    return {**data, **fields}


def management(total: int, initial: int) -> dict:
    return {"destinations-TOTAL_FORMS": str(total), "destinations-INITIAL_FORMS": str(initial),
            "destinations-MIN_NUM_FORMS": "0", "destinations-MAX_NUM_FORMS": "10"}


def destination_row(index: int, *, connection, model: str, role: str = "primary", weight="", order="",
                    pk="", delete: bool = False) -> dict:
    row = {"connection": connection, "model": model, "role": role, "weight": weight, "ORDER": order, "id": pk}
    if delete:
        row["DELETE"] = "on"
    return {f"destinations-{index}-{name}": value for name, value in row.items()}


@pytest.fixture
def openai(make_connection) -> Connection:
    return make_connection("openai-prod")


def test_list_shows_the_documented_columns(admin_client, openai, make_endpoint):
    make_endpoint("chat-main", openai)
    make_endpoint("embed-off", openai, model="text-embedding-3-small", task="embeddings", enabled=False)

    page = admin_client.get(LIST_URL).content.decode()

    for header in ("Name", "Destinations", "Models", "Task", "Enabled"):
        assert f'<th scope="col">{header}</th>' in page
    assert page.index("chat-main") < page.index("embed-off")
    assert ">text-embedding-3-small</code>" in page and "Embeddings" in page
    assert '<span class="badge badge-ok">Yes</span>' in page and '<span class="badge">No</span>' in page
    assert 'href="/settings/endpoints/chat-main/edit/"' in page and 'href="/settings/endpoints/chat-main/delete/"' in page
    assert f'href="{CREATE_URL}"' in page
    assert 'href="/settings/endpoints/" aria-current="page">Endpoints</a>' in page
    assert PLANTED_KEY not in page


def test_empty_list_explains_and_offers_create(admin_client):
    page = admin_client.get(LIST_URL).content.decode()
    assert "No endpoints yet" in page and f'href="{CREATE_URL}"' in page


def test_list_costs_the_same_queries_with_1000_endpoints(client, django_user_model, django_assert_num_queries,
                                                         make_connection):
    login_with_perms(client, django_user_model, "endpoints.view_endpoint")
    connections = [make_connection(f"conn-{number}", provider="anthropic") for number in range(20)]
    bulk_endpoints((f"ep-{number:04d}", connections[number % 20], "claude-x", "chat") for number in range(1000))
    # session, user, user permissions, group permissions, page of endpoints with their count, their destinations,
    # their calls of the last 24 hours, their last use
    with django_assert_num_queries(8):
        page = client.get(LIST_URL).content.decode()
    assert page.count('<th scope="row"') == 50 and "Page 1 of 20" in page


def test_create_form_has_the_documented_fields_and_preselects_a_connection(admin_client, openai, make_connection):
    make_connection("anthropic-dev", provider="anthropic")
    page = admin_client.get(CREATE_URL + "?connection=openai-prod").content.decode()
    for field in ("name", "task", "enabled", "deadline_seconds", "destinations-0-connection", "destinations-0-model",
                  "destinations-0-role", "destinations-0-weight"):
        assert f'<label for="id_{field}"' in page
    assert f'<option value="{openai.pk}" selected>openai-prod (OpenAI)</option>' in page
    assert "anthropic-dev (Anthropic)" in page
    assert ">Create</button>" in page


def test_create_saves_the_endpoint(admin_client, openai):
    response = admin_client.post(CREATE_URL, endpoint_data(openai), follow=True)
    assert response.redirect_chain == [(LIST_URL, 302)]
    assert "Endpoint “chat-main” created." in response.content.decode()
    endpoint = Endpoint.objects.get()
    assert (endpoint.task, endpoint.enabled) == ("chat", True)
    assert sorted(endpoint.fallback_on) == ["rate_limited", "server_error"]
    assert [(d.connection, d.model, d.role, d.weight) for d in endpoint.destinations.all()] == [
        (openai, "gpt-4o-mini", "primary", 100)]


@pytest.mark.parametrize(
    ("fields", "field_name", "message"),
    [
        ({"name": "Chat"}, "name", "Use lowercase letters only"),
        ({"task": "images"}, "task", "Select a valid choice."),
        ({"deadline_seconds": "0"}, "deadline_seconds", "greater than or equal to 1"),
    ],
)
def test_create_with_bad_input_shows_the_error_next_to_the_field_and_saves_nothing(
    admin_client, openai, fields, field_name, message
):
    response = admin_client.post(CREATE_URL, endpoint_data(openai, **fields))
    assert response.status_code == 200
    assert f'id="id_{field_name}_error"' in response.content.decode()
    assert message in response.context["form"].errors[field_name][0]
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    ("row", "field_name", "message"),
    [
        ({"model": " "}, "model", "This field is required."),
        ({"connection": ""}, "connection", "This field is required."),
        ({"weight": ""}, "weight", "Give a primary destination a weight from 1 to 100."),
        ({"weight": "101"}, "weight", "less than or equal to 100"),
    ],
)
def test_a_bad_destination_row_shows_the_error_in_its_row_and_saves_nothing(admin_client, openai, row, field_name,
                                                                             message):
    response = admin_client.post(CREATE_URL, endpoint_data(openai, **row))
    assert response.status_code == 200
    assert message in response.context["destinations"].forms[0].errors[field_name][0]
    assert "row-invalid" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_weights_that_do_not_add_up_to_100_are_refused_above_the_rows(admin_client, openai, make_connection):
    azure = make_connection("azure-prod")
    data = {**endpoint_data(openai, weight=70), **management(2, 0),
            **destination_row(1, connection=azure.pk, model="gpt-4o-mini", weight=20)}

    response = admin_client.post(CREATE_URL, data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "weights add up to 90; they must add up to 100" in page
    assert '<output id="weight-sum">90</output> / 100' in page  # the total, without scripts too
    assert not Endpoint.objects.exists()


def test_the_form_saves_a_split_and_an_ordered_fallback_list(admin_client, openai, make_connection):
    azure, backup, spare = (make_connection(name) for name in ("azure-prod", "backup", "spare"))
    data = {**endpoint_data(openai, weight=70), **management(5, 0),
            **destination_row(1, connection=spare.pk, model="gpt-4o-mini", role="fallback", order=2),
            **destination_row(2, connection=azure.pk, model="gpt-4o-mini", weight=30),
            **destination_row(3, connection=backup.pk, model="gpt-4o", role="fallback", order=1),
            **destination_row(4, connection="", model="", weight="")}  # the blank row, left blank

    response = admin_client.post(CREATE_URL, data, follow=True)

    assert response.redirect_chain == [(LIST_URL, 302)]
    endpoint = Endpoint.objects.get()
    assert [(d.connection.name, d.role, d.weight) for d in endpoint.destinations.order_by("position")] == [
        ("openai-prod", "primary", 70), ("azure-prod", "primary", 30), ("backup", "fallback", None),
        ("spare", "fallback", None)]
    assert "openai-prod 70% · azure-prod 30%, then backup, then spare" in response.content.decode()


def test_editing_removes_a_destination_and_the_audit_names_the_field(admin_client, openai, make_connection,
                                                                      make_endpoint):
    from audit.models import AuditEntry

    backup = make_connection("backup")
    endpoint = make_endpoint("chat-main", openai, fallbacks=((backup, "gpt-4o"),))
    primary, fallback = endpoint.destinations.order_by("position")
    data = {**endpoint_data(openai), **management(2, 2),
            **destination_row(0, connection=openai.pk, model="gpt-4o-mini", weight=100, pk=primary.pk),
            **destination_row(1, connection=backup.pk, model="gpt-4o", role="fallback", pk=fallback.pk, delete=True)}

    response = admin_client.post("/settings/endpoints/chat-main/edit/", data)

    assert response.status_code == 302, response.context["destinations"].errors
    assert [d.connection.name for d in Destination.objects.all()] == ["openai-prod"]
    entry = AuditEntry.objects.filter(subject_type="endpoint").latest("id")
    assert "destinations" in entry.fields and PLANTED_KEY not in str(entry.fields)


def test_create_refuses_a_task_the_provider_does_not_support(admin_client, make_connection):
    anthropic = make_connection("anthropic-dev", provider="anthropic")
    response = admin_client.post(CREATE_URL, endpoint_data(anthropic, task="embeddings"))
    error = response.context["destinations"].forms[0].errors["connection"][0]
    assert "Anthropic does not support embeddings (connection anthropic-dev)" in error
    assert not Endpoint.objects.exists()


def test_edit_saves_changes(admin_client, openai, make_endpoint):
    make_endpoint("chat-main", openai)
    page = admin_client.get("/settings/endpoints/chat-main/edit/").content.decode()
    assert 'value="gpt-4o-mini"' in page and ">Save</button>" in page

    row = Destination.objects.get()
    data = {**endpoint_data(openai, model="gpt-4o", enabled=""), **management(1, 1), "destinations-0-id": row.pk}
    response = admin_client.post("/settings/endpoints/chat-main/edit/", data, follow=True)

    assert "Endpoint “chat-main” saved." in response.content.decode()
    endpoint = Endpoint.objects.get()
    assert (endpoint.destinations.get().model, endpoint.enabled) == ("gpt-4o", False)


def test_delete_asks_for_confirmation_then_deletes_only_the_endpoint(admin_client, openai, make_endpoint):
    make_endpoint("chat-main", openai)
    page = admin_client.get("/settings/endpoints/chat-main/delete/").content.decode()
    assert ">Delete</button>" in page and PLANTED_KEY not in page

    response = admin_client.post("/settings/endpoints/chat-main/delete/", follow=True)

    assert "Endpoint “chat-main” deleted." in response.content.decode()
    assert not Endpoint.objects.exists()
    assert Connection.objects.filter(name="openai-prod").exists()


PAGES = [
    ("get", LIST_URL, "endpoints.view_endpoint"),
    ("get", CREATE_URL, "endpoints.add_endpoint"),
    ("post", CREATE_URL, "endpoints.add_endpoint"),
    ("get", "/settings/endpoints/chat-main/edit/", "endpoints.change_endpoint"),
    ("post", "/settings/endpoints/chat-main/edit/", "endpoints.change_endpoint"),
    ("get", "/settings/endpoints/chat-main/delete/", "endpoints.delete_endpoint"),
    ("post", "/settings/endpoints/chat-main/delete/", "endpoints.delete_endpoint"),
]


@pytest.mark.parametrize(("method", "url", "perm"), PAGES)
def test_each_page_refuses_a_user_without_its_permission(client, django_user_model, openai, make_endpoint,
                                                         method, url, perm):
    make_endpoint("chat-main", openai)
    login_with_perms(client, django_user_model, *({p for _, _, p in PAGES} - {perm}))

    response = getattr(client, method)(url, endpoint_data(openai, name="other", model="changed"))

    assert response.status_code == 403
    assert list(Endpoint.objects.values_list("name", "destinations__model")) == [("chat-main", "gpt-4o-mini")]


@pytest.mark.parametrize(("method", "url", "perm"), PAGES)
def test_each_page_opens_with_its_permission(client, django_user_model, openai, make_endpoint, method, url, perm):
    make_endpoint("chat-main", openai)
    login_with_perms(client, django_user_model, perm)
    response = getattr(client, method)(url, endpoint_data(openai, name="other") if method == "post" else None)
    assert response.status_code in (200, 302)


def test_signed_out_visitors_go_to_the_login_page(client):
    assert client.get(LIST_URL).headers["Location"] == f"/accounts/login/?next={LIST_URL}"


def test_posts_without_a_csrf_token_are_refused(admin_user, openai):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(CREATE_URL, endpoint_data(openai)).status_code == 403
    assert not Endpoint.objects.exists()


def test_the_edit_form_reads_the_connections_once_however_many_rows(admin_client, make_connection, make_endpoint,
                                                                    django_assert_max_num_queries):
    connections = [make_connection(f"conn-{number}") for number in range(10)]
    make_endpoint("chat-main", connections[0], fallbacks=tuple((c, "gpt-4o") for c in connections[1:]))
    # session, user, endpoint, its destinations, the connections, whether any exist (+ the settings layout's own)
    with django_assert_max_num_queries(10):
        page = admin_client.get("/settings/endpoints/chat-main/edit/").content.decode()
    assert page.count('<option value="') >= 10 * 11


def test_the_form_sets_the_endpoints_limits(admin_client, openai):
    data = endpoint_data(openai, requests_per_minute="60", token_budget="100000", budget_period="day")

    assert admin_client.post(CREATE_URL, data).status_code == 302

    endpoint = Endpoint.objects.get()
    assert (endpoint.requests_per_minute, endpoint.token_budget, endpoint.budget_period) == (60, 100000, "day")
    assert "60/min · 100,000 tokens per day" in admin_client.get(LIST_URL).content.decode()


def test_a_fallback_in_another_environment_is_refused_unless_mixing_is_allowed(admin_client, openai,
                                                                                make_connection):
    staging = make_connection("openai-staging", environment="staging")
    data = {**endpoint_data(openai), **management(2, 0),
            **destination_row(1, connection=staging.pk, model="gpt-4o-mini", role="fallback")}

    refused = admin_client.post(CREATE_URL, data)
    assert refused.status_code == 200 and not Endpoint.objects.exists()
    allowed = admin_client.post(CREATE_URL, {**data, "allow_mixed_environments": "on"})

    assert ("This endpoint would mix production and non-production connections "
            "(openai-prod (Production), openai-staging (Staging))") in refused.content.decode()
    assert allowed.status_code == 302
    endpoint = Endpoint.objects.get()
    assert [c.name for c in endpoint.connections_used()] == ["openai-prod", "openai-staging"]
