"""The LLM Connections tab: list, create, edit, delete, history, audit log, login and permissions."""

import re

import pytest
from cryptography.fernet import Fernet
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from connections.models import Connection
from connections.secrets import UNDECRYPTABLE_LABEL, mask_secret
from endpoints.models import Endpoint
from tests.conftest import PLANTED_KEY, bulk_endpoints
from tests.web import login_with_perms
from teams.models import Team

pytestmark = pytest.mark.django_db

LIST_URL = "/settings/connections/"
CREATE_URL = "/settings/connections/new/"
NEW_KEY = "sk-rotated-NEWVALUE-9876543210-zyxwQRST"
AZURE_CONFIG = {"config.endpoint_url": "https://my-resource.openai.azure.com", "config.api_version": "2024-10-21"}


def edit_url(name: str) -> str:
    return f"/settings/connections/{name}/edit/"


def delete_url(name: str) -> str:
    return f"/settings/connections/{name}/delete/"


def history_url(name: str) -> str:
    return f"/settings/connections/{name}/history/"


def create_data(**fields) -> dict:
    """What the Create form posts for an OpenAI API-key connection, with `fields` replacing or adding inputs."""
    return {
        "name": "my-openai-key",
        "provider": "openai",
        "auth_method": "api_key",
        "selection": "openai/api_key",
        "secrets.api_key": PLANTED_KEY,
        "config.organization": "",
        "config.base_url": "",
        "description": "",
        **fields,
    }


def edit_data(connection: Connection, **fields) -> dict:
    return {
        "name": connection.name,
        "provider": connection.provider,
        "auth_method": connection.auth_method,
        "selection": f"{connection.provider}/{connection.auth_method}",
        "description": connection.description,
        **{f"config.{key}": value for key, value in connection.config.items()},
        **fields,
    }


# --- Landing, login and logout -----------------------------------------------------------------------


def test_root_lands_on_the_connections_tab(admin_client):
    assert admin_client.get("/").headers["Location"] == "/settings/"
    assert admin_client.get("/settings/").headers["Location"] == LIST_URL


def test_pages_send_signed_out_visitors_to_the_login_page(client, make_connection):
    make_connection()
    for url in (LIST_URL, CREATE_URL, edit_url("openai-prod"), delete_url("openai-prod"),
                history_url("openai-prod"), "/settings/audit/", "/settings/connections/method-fields/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"] == f"/accounts/login/?next={url}"


def test_login_page_has_the_documented_labels_and_signs_in(client, admin_user):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">Username' in page
    assert '<label for="id_password">Password' in page
    assert ">Log in</button>" in page

    response = client.post("/accounts/login/", {"username": "root", "password": "pw-root-123456"})

    assert response.headers["Location"] == "/settings/"
    assert client.get(LIST_URL).status_code == 200


def test_log_out_is_a_post_button_in_the_header(admin_client):
    page = admin_client.get(LIST_URL).content.decode()
    assert '<form method="post" action="/accounts/logout/"' in page
    assert ">Log out</button>" in page

    assert admin_client.get("/accounts/logout/").status_code == 405
    assert admin_client.post("/accounts/logout/").status_code == 302
    assert admin_client.get(LIST_URL).status_code == 302


def test_header_links_the_tabs_the_audit_log_and_tokens(admin_client):
    page = admin_client.get(LIST_URL).content.decode()
    assert 'href="/settings/connections/" aria-current="page">LLM Connections</a>' in page
    assert 'href="/settings/endpoints/">Endpoints</a>' in page
    assert 'href="/settings/audit/">Audit log</a>' in page
    assert 'href="/settings/tokens/">Tokens</a>' in page


def test_pages_load_no_inline_script_and_nothing_from_outside(admin_client, make_connection):
    make_connection()
    for url in (LIST_URL, CREATE_URL, edit_url("openai-prod"), "/accounts/login/"):
        page = admin_client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]* src=\"/static/)", page), url  # only our own script files
        assert not re.search(r" on[a-z]+=", page), url  # no inline event handlers
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", page), url
        assert " style=" not in page and "<style" not in page, url


def test_error_pages_render_in_the_settings_layout_without_a_request():
    # Django renders 500.html with no request and no context processors: it must still work.
    page = render_to_string("500.html")
    assert "Something went wrong" in page and "settings.css" in page


# --- List ---------------------------------------------------------------------------------------------


def test_list_shows_each_connection_with_its_mask_endpoints_and_dates(admin_client, make_connection, make_endpoint):
    azure = make_connection("azure-prod", auth_method="azure", config={"endpoint_url": "https://r.openai.azure.com",
                                                                          "api_version": "2024-10-21"})
    make_connection("anthropic-dev", provider="anthropic", secrets={"api_key": "short-key"})
    make_endpoint("chat-main", azure)
    make_endpoint("embed-old", azure, model="text-embedding-3-small", task="embeddings", enabled=False)

    response = admin_client.get(LIST_URL)
    page = response.content.decode()

    for header in ("Name", "Provider", "Auth method", "Credentials", "Endpoints", "Last updated", "Created"):
        assert f'<th scope="col">{header}</th>' in page
    assert page.index("anthropic-dev") < page.index("azure-prod")  # ordered by name
    assert "Azure OpenAI (API key)" in page and "Anthropic" in page
    assert mask_secret(PLANTED_KEY) in page and "********" in page
    assert 'href="/settings/endpoints/chat-main/edit/">chat-main</a>' in page
    assert "embed-old</a>" in page
    assert azure.secrets_updated_at.strftime("%Y-%m-%d %H:%M") in page
    for link in (edit_url("azure-prod"), delete_url("azure-prod"), history_url("azure-prod")):
        assert f'href="{link}"' in page
    assert f'href="{CREATE_URL}"' in page
    assert PLANTED_KEY not in page


def test_empty_list_explains_what_a_connection_is_and_offers_create(admin_client):
    page = admin_client.get(LIST_URL).content.decode()
    assert "No LLM connections yet" in page
    assert "A connection stores one provider credential" in page
    assert f'href="{CREATE_URL}"' in page


def test_list_shows_50_a_page(admin_client):
    Connection.objects.bulk_create(
        Connection(name=f"conn-{number:03d}", provider="anthropic", auth_method="api_key", secrets={"api_key": "k"},
                   team=Team.objects.default())
        for number in range(51)
    )
    first = admin_client.get(LIST_URL).content.decode()
    second = admin_client.get(LIST_URL + "?page=2").content.decode()
    assert "conn-049" in first and "conn-050" not in first
    assert "conn-050" in second and "Page 2 of 2" in second


def test_list_costs_the_same_queries_with_200_connections_and_1000_endpoints(
    client, django_user_model, django_assert_num_queries
):
    login_with_perms(client, django_user_model, "connections.view_connection")
    Connection.objects.bulk_create(
        Connection(name=f"conn-{number:03d}", provider="openai", auth_method="api_key",
                   secrets={"api_key": PLANTED_KEY}, team=Team.objects.default()) for number in range(200)
    )
    connections = list(Connection.objects.only("id"))
    bulk_endpoints((f"ep-{number:04d}", connections[number % 200], "gpt-4o-mini", "chat") for number in range(1000))
    # session, user, user permissions, group permissions, page of connections with their count, their endpoints,
    # their calls of the last 24 hours
    with django_assert_num_queries(7):
        first = client.get(LIST_URL)
    with django_assert_num_queries(7):
        last = client.get(LIST_URL + "?page=4")
    assert first.content.decode().count('/edit/">ep-') == 250  # 50 connections × 5 endpoints each
    assert "conn-199" in last.content.decode()


def test_an_edit_costs_the_same_few_queries_however_many_endpoints(admin_client, admin_user, make_connection,
                                                                   make_endpoint, django_assert_num_queries):
    connection = make_connection("openai-prod", actor=admin_user)
    for number in range(20):
        make_endpoint(f"chat-{number}", connection)

    # session, user, savepoint, the row locked, UPDATE, audit INSERT, release: neither the unchanged name
    # nor the creator is checked again, and the save takes no savepoint of its own.
    with django_assert_num_queries(7):
        response = admin_client.post(edit_url("openai-prod"), edit_data(connection, description="Prod key"))

    assert response.status_code == 302
    assert Connection.objects.get(name="openai-prod").description == "Prod key"


# --- Create -------------------------------------------------------------------------------------------


def test_create_form_has_the_documented_fields(admin_client):
    page = admin_client.get(CREATE_URL).content.decode()
    assert '<label for="id_name">Name' in page
    assert '<label for="id_provider">Provider' in page
    assert '<option value="vertex_ai">Google Vertex AI (GCP)</option>' in page
    assert '<label for="id_auth_method">Authentication method' in page
    assert '<option value="azure">Azure OpenAI (API key)</option>' in page
    assert 'type="password" name="secrets.api_key"' in page
    assert '<label for="id_description">Description' in page
    assert ">Create</button>" in page
    assert 'src="/static/settings/connection-form.js"' in page


def test_a_provider_with_one_auth_method_hides_the_method_dropdown(admin_client):
    page = admin_client.get("/settings/connections/method-fields/?provider=anthropic").content.decode()
    assert '<input type="hidden" name="auth_method" value="api_key"' in page
    assert "<select" not in page


def test_create_saves_the_connection_with_its_creator_and_audits_it(admin_client, admin_user):
    response = admin_client.post(CREATE_URL, create_data(description="Team A production"), follow=True)

    assert response.redirect_chain == [(LIST_URL, 302)]
    connection = Connection.objects.get(name="my-openai-key")
    assert connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert connection.created_by == admin_user and connection.updated_by == admin_user
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.subject_id) == ("created", admin_user, connection.pk)
    page = response.content.decode()
    assert "Connection “my-openai-key” created." in page
    assert PLANTED_KEY not in page


def test_create_azure_saves_its_endpoint_url_and_api_version(admin_client):
    data = create_data(auth_method="azure", selection="openai/azure", **AZURE_CONFIG)
    assert admin_client.post(CREATE_URL, data).status_code == 302
    connection = Connection.objects.get()
    assert connection.auth_method == "azure"
    assert connection.config == {"endpoint_url": "https://my-resource.openai.azure.com", "api_version": "2024-10-21"}


@pytest.mark.parametrize(
    ("fields", "field_name", "message"),
    [
        ({"name": "My-Key"}, "name", "Use lowercase letters only"),
        ({"name": ""}, "name", "This field is required."),
        ({"secrets.api_key": ""}, "secrets.api_key", "API key is required."),
        ({"auth_method": "azure", "selection": "openai/azure", "config.endpoint_url": "http://10.0.0.8",
          "config.api_version": "2024-10-21"}, "config.endpoint_url", "Use https://"),
        ({"auth_method": "azure", "selection": "openai/azure", "config.endpoint_url": "https://r.openai.azure.com",
          "config.api_version": "yesterday"}, "config.api_version", ""),
    ],
)
def test_create_with_bad_input_shows_the_error_next_to_the_field_and_saves_nothing(
    admin_client, fields, field_name, message
):
    response = admin_client.post(CREATE_URL, create_data(**fields))

    assert response.status_code == 200
    assert Connection.objects.count() == 0 and AuditEntry.objects.count() == 0
    page = response.content.decode()
    assert f'id="id_{field_name}_error"' in page  # Django renders the field's error list right beside it
    assert message in response.context["form"].errors[field_name][0]
    assert PLANTED_KEY not in page  # a typed secret is never echoed back


def test_create_refuses_a_name_already_taken(admin_client, make_connection):
    make_connection("my-openai-key")
    response = admin_client.post(CREATE_URL, create_data())
    assert response.status_code == 200
    assert "already exists" in response.context["form"].errors["name"][0]
    assert Connection.objects.count() == 1


def test_a_changed_provider_without_javascript_re_renders_its_fields_without_saving(admin_client):
    data = create_data(name="vertex-main", provider="vertex_ai", description="typed before the swap")

    response = admin_client.post(CREATE_URL, data)

    assert response.status_code == 200
    assert Connection.objects.count() == 0
    page = response.content.decode()
    assert '<label for="id_config.project_id">Project ID' in page
    assert 'name="secrets.service_account_json"' in page
    assert 'name="selection" value="vertex_ai/service_account"' in page
    assert 'value="vertex-main"' in page and "typed before the swap" in page
    assert "now those of Google Vertex AI (GCP)" in page
    assert "is required" not in page  # the new fields were never shown: nothing is "missing" yet
    assert PLANTED_KEY not in page


def test_a_changed_auth_method_without_javascript_shows_the_azure_fields(admin_client):
    response = admin_client.post(CREATE_URL, create_data(auth_method="azure"))
    page = response.content.decode()
    assert Connection.objects.count() == 0
    assert '<label for="id_config.endpoint_url">Endpoint URL' in page
    assert '<label for="id_config.api_version">API version' in page


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        ("provider=openai&auth_method=azure", ["Endpoint URL", "API version", "API key"]),
        ("provider=openai&auth_method=azure_ad", ["Client secret", "Tenant ID", "Client ID"]),
        ("provider=vertex_ai", ["Service account key (JSON)", "Project ID", "Location"]),
        ("provider=bedrock", ["Access key ID", "Secret access key", "Session token", "Region"]),
        ("provider=no-such-provider", ["API key", "Organization"]),
    ],
)
def test_method_fields_fragment_has_the_fields_of_the_chosen_method(admin_client, query, labels):
    response = admin_client.get(f"/settings/connections/method-fields/?{query}")
    assert response.status_code == 200
    page = response.content.decode()
    for label in labels:
        assert f">{label}" in page
    assert "<html" not in page and 'name="selection"' in page


def test_method_fields_fragment_for_a_stored_connection_shows_masks_only_for_its_own_method(
    admin_client, make_connection
):
    make_connection()
    same = admin_client.get("/settings/connections/method-fields/?provider=openai&connection=openai-prod")
    other = admin_client.get(
        "/settings/connections/method-fields/?provider=openai&auth_method=azure&connection=openai-prod"
    )
    assert f'placeholder="{mask_secret(PLANTED_KEY)}"' in same.content.decode()
    assert mask_secret(PLANTED_KEY) not in other.content.decode()
    assert PLANTED_KEY not in same.content.decode() + other.content.decode()


def test_method_fields_of_a_stored_connection_need_the_change_permission(client, django_user_model, make_connection):
    make_connection()
    login_with_perms(client, django_user_model, "connections.add_connection")
    assert client.get("/settings/connections/method-fields/?provider=openai").status_code == 200
    assert client.get("/settings/connections/method-fields/?provider=openai&connection=openai-prod").status_code == 403


# --- Edit ---------------------------------------------------------------------------------------------


def test_edit_shows_empty_secret_inputs_with_the_mask_as_placeholder(admin_client, make_connection):
    make_connection(description="main key")
    response = admin_client.get(edit_url("openai-prod"))
    page = response.content.decode()
    assert f'type="password" name="secrets.api_key" autocomplete="new-password" placeholder="{mask_secret(PLANTED_KEY)}"' in page
    assert "Leave empty to keep the stored value." in page
    assert ">Save</button>" in page
    assert PLANTED_KEY not in page


def test_edit_with_the_key_left_empty_keeps_it(admin_client, make_connection):
    connection = make_connection()
    response = admin_client.post(edit_url("openai-prod"), edit_data(connection, description="new words"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert connection.description == "new words"
    assert AuditEntry.objects.latest("id").fields == ["description"]


def test_edit_with_a_new_key_rotates_it_and_endpoints_keep_pointing_at_the_connection(
    admin_client, admin_user, make_connection, make_endpoint
):
    connection = make_connection()
    endpoint = make_endpoint("chat-main", connection)

    response = admin_client.post(edit_url("openai-prod"), edit_data(connection, **{"secrets.api_key": NEW_KEY}),
                                 follow=True)

    connection.refresh_from_db()
    assert connection.get_secrets() == {"api_key": NEW_KEY}
    endpoint.refresh_from_db()
    assert endpoint.destinations.get().connection_id == connection.pk
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.actor, entry.fields) == ("key_rotated", admin_user, ["secrets.api_key"])
    page = response.content.decode()
    assert "Credentials of “openai-prod” updated" in page
    assert mask_secret(NEW_KEY) in page and mask_secret(PLANTED_KEY) not in page
    assert NEW_KEY not in page


def test_edit_with_nothing_changed_says_so_and_records_nothing(admin_client, make_connection):
    connection = make_connection()
    response = admin_client.post(edit_url("openai-prod"), edit_data(connection), follow=True)
    assert "Nothing changed" in response.content.decode()
    assert AuditEntry.objects.count() == 1  # the creation only


def test_edit_can_rename_and_endpoints_follow(admin_client, make_connection, make_endpoint):
    connection = make_connection()
    make_endpoint("chat-main", connection)
    admin_client.post(edit_url("openai-prod"), edit_data(connection, name="openai-production"))
    assert Endpoint.objects.get().destinations.get().connection.name == "openai-production"


def test_edit_to_another_auth_method_requires_its_secret(admin_client, make_connection):
    connection = make_connection()
    data = edit_data(connection, auth_method="azure", selection="openai/azure", **AZURE_CONFIG)
    response = admin_client.post(edit_url("openai-prod"), data)
    assert response.context["form"].errors["secrets.api_key"] == ["API key is required."]
    connection.refresh_from_db()
    assert connection.auth_method == "api_key"


def test_edit_of_an_unknown_connection_is_404(admin_client):
    assert admin_client.get(edit_url("nope")).status_code == 404


# --- Delete -------------------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_then_deletes_and_keeps_the_history(admin_client, admin_user, make_connection):
    make_connection()
    page = admin_client.get(delete_url("openai-prod")).content.decode()
    assert ">Delete</button>" in page and PLANTED_KEY not in page

    response = admin_client.post(delete_url("openai-prod"), follow=True)

    assert response.redirect_chain == [(LIST_URL, 302)]
    assert "Connection “openai-prod” deleted." in response.content.decode()
    assert not Connection.objects.exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.actor, entry.connection_name) == ("deleted", admin_user, "openai-prod")
    assert "openai-prod" in admin_client.get("/settings/audit/").content.decode()


def test_delete_warns_lists_the_endpoints_and_refuses_while_any_uses_it(admin_client, make_connection, make_endpoint):
    connection = make_connection()
    make_endpoint("chat-main", connection)
    make_endpoint("chat-off", connection, enabled=False)

    warning = admin_client.get(delete_url("openai-prod")).content.decode()
    assert "cannot be deleted" in warning
    assert 'href="/settings/endpoints/chat-main/edit/">chat-main</a>' in warning
    assert 'href="/settings/endpoints/chat-off/edit/">chat-off</a> <span class="badge">disabled</span>' in warning
    assert ">Delete</button>" not in warning

    response = admin_client.post(delete_url("openai-prod"))  # submitted anyway (a stale page, a script)

    assert response.status_code == 409
    page = response.content.decode()
    assert "“openai-prod” was not deleted: 2 endpoint(s) still use it." in page
    assert "chat-main</a>" in page and "chat-off</a>" in page
    assert Connection.objects.filter(name="openai-prod").exists()
    assert not AuditEntry.objects.filter(action="deleted").exists()


# --- History and audit log ------------------------------------------------------------------------------


def test_history_lists_what_was_done_to_the_connection_with_field_names_only(
    admin_client, admin_user, make_connection
):
    connection = make_connection(actor=admin_user)
    make_connection("other", actor=admin_user)
    admin_client.post(edit_url("openai-prod"), edit_data(connection, **{"secrets.api_key": NEW_KEY}))

    page = admin_client.get(history_url("openai-prod")).content.decode()

    assert "Key rotated" in page and "Created" in page
    assert '<span class="chip" title="secrets.api_key">API key</span>' in page
    assert "root" in page
    assert "other" not in page.split("<tbody>")[1]
    assert PLANTED_KEY not in page and NEW_KEY not in page


def test_audit_log_lists_every_entry_newest_first_and_paginates(admin_client, admin_user, make_connection):
    for number in range(52):
        make_connection(f"conn-{number:03d}", provider="anthropic", actor=admin_user)
    first = admin_client.get("/settings/audit/").content.decode()
    second = admin_client.get("/settings/audit/?page=2").content.decode()
    assert first.index("conn-051") < first.index("conn-050")
    assert "conn-001" not in first and "conn-000" in second
    assert 'href="/settings/connections/conn-051/history/">conn-051</a>' in first
    assert "Page 2 of 2" in second


# --- Permissions and CSRF --------------------------------------------------------------------------------

PAGES = [
    ("get", LIST_URL, "connections.view_connection"),
    ("get", CREATE_URL, "connections.add_connection"),
    ("post", CREATE_URL, "connections.add_connection"),
    ("get", edit_url("openai-prod"), "connections.change_connection"),
    ("post", edit_url("openai-prod"), "connections.change_connection"),
    ("get", delete_url("openai-prod"), "connections.delete_connection"),
    ("post", delete_url("openai-prod"), "connections.delete_connection"),
    ("get", history_url("openai-prod"), "connections.view_connection"),
    ("get", "/settings/audit/", "audit.view_auditentry"),
    ("get", "/settings/connections/method-fields/?provider=openai",
     "connections.add_connection|connections.change_connection"),
]
ALL_PERMS = {perm for _, _, perms in PAGES for perm in perms.split("|")}


@pytest.mark.parametrize(("method", "url", "perm"), PAGES)
def test_each_page_refuses_a_user_without_its_permission(client, django_user_model, make_connection,
                                                         method, url, perm):
    make_connection()
    login_with_perms(client, django_user_model, *(ALL_PERMS - set(perm.split("|"))))

    response = getattr(client, method)(url, create_data() if method == "post" else None)

    assert response.status_code == 403
    assert "Permission denied" in response.content.decode()
    assert Connection.objects.filter(name="openai-prod").exists()
    assert Connection.objects.count() == 1


@pytest.mark.parametrize(("method", "url", "perm"), PAGES)
def test_each_page_opens_with_its_permission(client, django_user_model, make_connection, method, url, perm):
    connection = make_connection()
    login_with_perms(client, django_user_model, perm.split("|")[0])
    data = edit_data(connection, description="changed") if "edit" in url else create_data()
    response = getattr(client, method)(url, data if method == "post" else None)
    assert response.status_code in (200, 302)


def test_posts_without_a_csrf_token_are_refused(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(CREATE_URL, create_data()).status_code == 403
    assert Connection.objects.count() == 0
    assert 'name="csrfmiddlewaretoken"' in client.get(CREATE_URL).content.decode()


# --- Secrets never leave, undecryptable rows never crash ---------------------------------------------------


def test_no_page_shows_the_secret(admin_client, make_connection, make_endpoint, admin_user):
    connection = make_connection(actor=admin_user)
    make_endpoint("chat-main", connection)
    admin_client.post(edit_url("openai-prod"), edit_data(connection, description="edited"))
    urls = [LIST_URL, edit_url("openai-prod"), delete_url("openai-prod"), history_url("openai-prod"),
            "/settings/audit/", "/settings/endpoints/", "/settings/endpoints/chat-main/edit/",
            "/settings/endpoints/chat-main/delete/", "/settings/endpoints/new/",
            "/settings/connections/method-fields/?provider=openai&connection=openai-prod"]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert PLANTED_KEY not in response.content.decode(), url
        assert PLANTED_KEY[3:-4] not in response.content.decode(), url
    refused = admin_client.post(delete_url("openai-prod"))
    assert PLANTED_KEY not in refused.content.decode()


@pytest.fixture
def undecryptable(make_connection, make_endpoint, use_keys):
    """A connection (with an endpoint) saved under a key that is no longer configured."""
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_keys(old_key)
    connection = make_connection(description="lost key")
    use_keys(new_key)
    return Connection.objects.get(pk=connection.pk)


def test_an_undecryptable_connection_shows_cannot_be_decrypted_on_list_and_edit(admin_client, undecryptable):
    assert not undecryptable.secrets_decryptable
    for url in (LIST_URL, edit_url("openai-prod"), delete_url("openai-prod"), history_url("openai-prod"),
                "/settings/audit/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert PLANTED_KEY not in response.content.decode()
    assert UNDECRYPTABLE_LABEL in admin_client.get(LIST_URL).content.decode()
    edit_page = admin_client.get(edit_url("openai-prod")).content.decode()
    assert f'placeholder="{UNDECRYPTABLE_LABEL}"' in edit_page
    assert "cannot be decrypted: re-enter it" in edit_page


def test_an_undecryptable_connection_can_be_re_entered(admin_client, undecryptable):
    response = admin_client.post(edit_url("openai-prod"), edit_data(undecryptable, **{"secrets.api_key": NEW_KEY}))
    assert response.status_code == 302
    connection = Connection.objects.get(pk=undecryptable.pk)
    assert connection.get_secrets() == {"api_key": NEW_KEY}
    assert mask_secret(NEW_KEY) in admin_client.get(LIST_URL).content.decode()


def test_an_undecryptable_connection_keeps_its_ciphertext_when_only_the_description_changes(
    admin_client, undecryptable
):
    response = admin_client.post(edit_url("openai-prod"), edit_data(undecryptable, description="still lost"))
    assert response.status_code == 302
    connection = Connection.objects.get(pk=undecryptable.pk)
    assert connection.description == "still lost"
    assert connection.secrets == undecryptable.secrets  # the same ciphertext, neither emptied nor re-encrypted


def test_an_undecryptable_connection_can_be_deleted(admin_client, undecryptable):
    assert admin_client.post(delete_url("openai-prod")).status_code == 302
    assert not Connection.objects.exists()
