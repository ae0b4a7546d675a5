"""The Endpoints tab: list, create, edit, delete and permissions."""

import pytest
from django.test import Client

from connections.models import Connection
from endpoints.models import Endpoint
from tests.conftest import PLANTED_KEY
from tests.web import login_with_perms

pytestmark = pytest.mark.django_db

LIST_URL = "/settings/endpoints/"
CREATE_URL = "/settings/endpoints/new/"


def endpoint_data(chosen: Connection, **fields) -> dict:
    return {"name": "chat-main", "connection": chosen.pk, "model": "gpt-4o-mini", "task": "chat",
            "enabled": "on", **fields}


@pytest.fixture
def openai(make_connection) -> Connection:
    return make_connection("openai-prod")


def test_list_shows_the_documented_columns(admin_client, openai, make_endpoint):
    make_endpoint("chat-main", openai)
    make_endpoint("embed-off", openai, model="text-embedding-3-small", task="embeddings", enabled=False)

    page = admin_client.get(LIST_URL).content.decode()

    for header in ("Name", "Connection", "Provider", "Model", "Task", "Enabled"):
        assert f'<th scope="col">{header}</th>' in page
    assert page.index("chat-main") < page.index("embed-off")
    assert 'href="/settings/connections/openai-prod/edit/">openai-prod</a>' in page
    assert "<code>text-embedding-3-small</code>" in page and "Embeddings" in page
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
    Endpoint.objects.bulk_create(
        Endpoint(name=f"ep-{number:04d}", connection=connections[number % 20], model="claude-x", task="chat")
        for number in range(1000)
    )
    # session, user, user permissions, group permissions, count, page of endpoints with their connections, their
    # calls of the last 24 hours, their last use
    with django_assert_num_queries(8):
        page = client.get(LIST_URL).content.decode()
    assert page.count('<th scope="row"') == 50 and "Page 1 of 20" in page


def test_create_form_has_the_documented_fields_and_preselects_a_connection(admin_client, openai, make_connection):
    make_connection("anthropic-dev", provider="anthropic")
    page = admin_client.get(CREATE_URL + "?connection=openai-prod").content.decode()
    for field in ("name", "connection", "model", "task", "enabled"):
        assert f'<label for="id_{field}">' in page
    assert f'<option value="{openai.pk}" selected>openai-prod (OpenAI)</option>' in page
    assert "anthropic-dev (Anthropic)" in page
    assert ">Create</button>" in page


def test_create_saves_the_endpoint(admin_client, openai):
    response = admin_client.post(CREATE_URL, endpoint_data(openai), follow=True)
    assert response.redirect_chain == [(LIST_URL, 302)]
    assert "Endpoint “chat-main” created." in response.content.decode()
    endpoint = Endpoint.objects.get()
    assert (endpoint.connection, endpoint.model, endpoint.task, endpoint.enabled) == (openai, "gpt-4o-mini", "chat", True)


@pytest.mark.parametrize(
    ("fields", "field_name", "message"),
    [
        ({"name": "Chat"}, "name", "Use lowercase letters only"),
        ({"model": ""}, "model", "This field is required."),
        ({"task": "images"}, "task", "Select a valid choice."),
        ({"connection": ""}, "connection", "This field is required."),
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


def test_create_refuses_a_task_the_provider_does_not_support(admin_client, make_connection):
    anthropic = make_connection("anthropic-dev", provider="anthropic")
    response = admin_client.post(CREATE_URL, endpoint_data(anthropic, task="embeddings"))
    assert "Anthropic does not support embeddings" in response.context["form"].errors["task"][0]
    assert not Endpoint.objects.exists()


def test_edit_saves_changes(admin_client, openai, make_endpoint):
    make_endpoint("chat-main", openai)
    page = admin_client.get("/settings/endpoints/chat-main/edit/").content.decode()
    assert 'value="gpt-4o-mini"' in page and ">Save</button>" in page

    response = admin_client.post("/settings/endpoints/chat-main/edit/",
                                 endpoint_data(openai, model="gpt-4o", enabled=""), follow=True)

    assert "Endpoint “chat-main” saved." in response.content.decode()
    endpoint = Endpoint.objects.get()
    assert (endpoint.model, endpoint.enabled) == ("gpt-4o", False)


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
    assert list(Endpoint.objects.values_list("name", "model")) == [("chat-main", "gpt-4o-mini")]


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
