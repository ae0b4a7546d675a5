"""The Django admin: add/change through ConnectionForm, masks only, protected deletes, audited, no N+1."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from audit.models import AuditEntry
from connections.models import Connection
from endpoints.models import Endpoint
from tests.conftest import PLANTED_KEY, bulk_endpoints


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def add_form(**changes) -> dict:
    return {
        "name": "admin-made",
        "provider": "openai",
        "auth_method": "api_key",
        "selection": "openai/api_key",
        "secrets.api_key": PLANTED_KEY,
        "config.organization": "",
        "config.base_url": "",
        "description": "",
        **changes,
    }


def test_the_admin_creates_a_connection_through_the_form(admin_client_):
    response = admin_client_.post(reverse("admin:connections_connection_add"), add_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get(name="admin-made")
    assert connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert connection.created_by.username == "root"
    assert AuditEntry.objects.get().action == "created"


def test_the_admin_shows_field_errors_and_saves_nothing(admin_client_):
    response = admin_client_.post(
        reverse("admin:connections_connection_add"), add_form(**{"config.base_url": "http://10.0.0.1"})
    )
    assert response.status_code == 200
    assert "Use https://" in response.content.decode()
    assert not Connection.objects.exists()


def test_the_admin_change_page_shows_the_mask_and_keeps_a_blank_secret(admin_client_, make_connection):
    connection = make_connection(name="planted")
    url = reverse("admin:connections_connection_change", args=[connection.pk])
    page = admin_client_.get(url).content.decode()
    assert PLANTED_KEY not in page
    assert "sk-...WXYZ" in page
    response = admin_client_.post(url, add_form(name="planted", **{"secrets.api_key": "", "description": "new"}))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.get_secrets() == {"api_key": PLANTED_KEY} and connection.description == "new"


def test_admin_history_names_fields_never_values(admin_client_, make_connection):
    connection = make_connection(name="planted")
    url = reverse("admin:connections_connection_change", args=[connection.pk])
    admin_client_.post(url, add_form(name="planted", **{"secrets.api_key": "sk-rotated-0123456789ABCDEF"}))
    entry = LogEntry.objects.get()
    assert "API key" in entry.get_change_message()
    history = admin_client_.get(reverse("admin:connections_connection_history", args=[connection.pk])).content.decode()
    for text in (entry.change_message, entry.object_repr, history):
        assert PLANTED_KEY not in text and "sk-rotated" not in text


def test_the_admin_delete_page_lists_protecting_endpoints_and_deletes_nothing(
    admin_client_, make_connection, make_endpoint
):
    connection = make_connection(name="used")
    make_endpoint("chat-disabled", connection, enabled=False)
    url = reverse("admin:connections_connection_delete", args=[connection.pk])
    page = admin_client_.get(url).content.decode()
    assert "chat-disabled" in page and "would require deleting the following protected related objects" in page
    admin_client_.post(url, {"post": "yes"})
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_the_admin_deletes_an_unused_connection_and_audits_it(admin_client_, make_connection):
    connection = make_connection(name="unused")
    admin_client_.post(reverse("admin:connections_connection_delete", args=[connection.pk]), {"post": "yes"})
    assert not Connection.objects.exists()
    assert AuditEntry.objects.filter(action="deleted", subject_name="unused", actor_name="root").exists()


def test_the_changelist_shows_masks_and_counts_with_a_constant_number_of_queries(
    admin_client_, make_connection, django_assert_max_num_queries
):
    connections = [make_connection(name=f"conn-{i:03}") for i in range(60)]
    bulk_endpoints((f"ep-{i:04}", connections[i % 60], "gpt-4o-mini", "chat") for i in range(300))
    with django_assert_max_num_queries(8):
        page = admin_client_.get(reverse("admin:connections_connection_changelist")).content.decode()
    assert PLANTED_KEY not in page
    assert page.count("sk-...WXYZ") == 60  # the changelist shows 100 a page
    assert ">5<" in page  # endpoint count


def test_an_undecryptable_connection_still_renders_in_the_admin(admin_client_, make_connection, use_keys):
    from cryptography.fernet import Fernet

    use_keys(Fernet.generate_key().decode())
    connection = make_connection(name="lost")
    use_keys(Fernet.generate_key().decode())
    assert "cannot be decrypted" in admin_client_.get(reverse("admin:connections_connection_changelist")).content.decode()
    page = admin_client_.get(reverse("admin:connections_connection_change", args=[connection.pk])).content.decode()
    assert "cannot be decrypted" in page and "gAAAA" not in page


def test_the_endpoint_admin_lists_without_n_plus_one(admin_client_, make_connection, django_assert_max_num_queries):
    connection = make_connection()
    bulk_endpoints((f"ep-{i}", connection, "m", "chat") for i in range(80))
    with django_assert_max_num_queries(8):
        response = admin_client_.get(reverse("admin:endpoints_endpoint_changelist"))
    assert response.status_code == 200


# --- Staff who may only view --------------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client, django_user_model):
    """A staff member holding connections.view_connection and nothing else."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123456", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="connections",
                                                       codename="view_connection"))
    client.force_login(viewer)
    return client


def test_view_only_staff_see_a_connection_with_its_mask_and_config_and_no_inputs(viewer_client, make_connection):
    connection = make_connection(name="planted", config={"base_url": "https://llm.example.com/v1"},
                                 description="Team A")
    url = reverse("admin:connections_connection_change", args=[connection.pk])

    response = viewer_client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    for shown in ("planted", "OpenAI", "API key", "sk-...WXYZ", "https://llm.example.com/v1", "Team A"):
        assert shown in page, shown
    assert PLANTED_KEY not in page
    assert 'name="secrets.api_key"' not in page and 'name="name"' not in page and "Save" not in page


def test_view_only_staff_change_nothing(viewer_client, make_connection):
    connection = make_connection(name="planted")
    url = reverse("admin:connections_connection_change", args=[connection.pk])

    response = viewer_client.post(url, add_form(name="renamed", **{"secrets.api_key": "sk-other-0123456789abcdef"}))

    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.name == "planted" and connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert viewer_client.get(reverse("admin:connections_connection_changelist")).status_code == 200
