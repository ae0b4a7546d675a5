"""The key rotation policy: each key's age against KEY_MAX_AGE_DAYS (or the connection's own maximum), on the
list page (badges and a filter), in the API (fields and a filter), and who changed a policy in the audit log.
The command's `--overdue` exit status is in test_commands.py."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from connections.models import Connection, Rotation
from tests.api_support import ALL_API_PERMISSIONS, bearer_client, grant
from tests.web import login_with_perms
from teams.models import Team

pytestmark = pytest.mark.django_db

LIST_URL = "/settings/connections/"
API = "/api/v1/connections/"


def age(name: str, *, days: float) -> Connection:
    """Make a connection's key `days` old, as if set then."""
    connection = Connection.objects.get(name=name)
    connection.secrets_updated_at = timezone.now() - timedelta(days=days)
    connection.save(update_fields=["secrets_updated_at"])
    return connection


@pytest.fixture
def keys_of_every_age(make_connection):
    """fresh (ok), aging (due soon), old (overdue), strict (own 7 days: overdue), lenient (own 365: ok),
    keyless (nothing to rotate)."""
    for name in ("fresh", "aging", "old"):
        make_connection(name)
    make_connection("strict", key_max_age_days=7)
    make_connection("lenient", key_max_age_days=365)
    make_connection("keyless", "ollama", "none", secrets={})
    age("aging", days=80)
    age("old", days=100)
    age("strict", days=10)
    age("lenient", days=100)
    age("keyless", days=1000)


# --- The model --------------------------------------------------------------------------------------------


def test_each_key_is_placed_by_its_age_against_the_default_or_its_own_maximum(keys_of_every_age):
    status = {c.name: c.rotation_status for c in Connection.objects.all()}

    assert status == {
        "fresh": Rotation.OK, "aging": Rotation.DUE_SOON, "old": Rotation.OVERDUE,
        "strict": Rotation.OVERDUE, "lenient": Rotation.OK, "keyless": Rotation.NO_KEY,
    }


@pytest.mark.parametrize("status", [s.value for s in Rotation])
def test_the_database_filter_agrees_with_each_rows_status(keys_of_every_age, status):
    filtered = set(Connection.objects.rotation(status).values_list("name", flat=True))

    assert filtered == {c.name for c in Connection.objects.all() if c.rotation_status == status}
    assert filtered  # every status has a row here


def test_the_age_and_due_date_follow_the_newest_key(make_connection):
    connection = make_connection("openai-prod", key_max_age_days=30)
    connection = age("openai-prod", days=40)
    assert (connection.key_age_days, connection.rotation_status) == (40, Rotation.OVERDUE)

    connection.update_secrets({"api_key": "sk-the-new-key-0123456789-abcdefghij"})
    connection.full_clean()
    connection.save()

    assert connection.key_age_days == 0 and connection.rotation_status == Rotation.OK
    assert abs(connection.key_due_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert not Connection.objects.rotation(Rotation.OVERDUE).exists()


def test_changing_the_default_moves_keys_without_their_own_maximum(keys_of_every_age, settings):
    settings.KEY_MAX_AGE_DAYS = 30

    overdue = set(Connection.objects.rotation(Rotation.OVERDUE).values_list("name", flat=True))

    assert overdue == {"aging", "old", "strict"}  # lenient keeps its own 365 days


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_maximum_age_outside_1_to_3650_days_is_refused(make_connection, days):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        make_connection("openai-prod", key_max_age_days=days)
    assert "key_max_age_days" in refused.value.error_dict


# --- The list page ----------------------------------------------------------------------------------------


def row_of(page: str, name: str) -> str:
    start = page.index(f'<th scope="row" class="name">{name}')
    return page[start:page.index("</tr>", start)]


def test_the_list_shows_each_keys_age_with_due_soon_and_overdue_badges(client, django_user_model,
                                                                        keys_of_every_age):
    login_with_perms(client, django_user_model, "connections.view_connection")

    page = client.get(LIST_URL).content.decode()

    assert "0 d old" in row_of(page, "fresh") and "badge-warning" not in row_of(page, "fresh")
    assert "badge-danger" not in row_of(page, "fresh")
    assert "80 d old" in row_of(page, "aging") and ">Due soon</span>" in row_of(page, "aging")
    assert "100 d old" in row_of(page, "old") and ">Overdue</span>" in row_of(page, "old")
    assert ">Overdue</span>" in row_of(page, "strict")
    assert "Due soon" not in row_of(page, "lenient") and "Overdue" not in row_of(page, "lenient")
    assert "no key" in row_of(page, "keyless") and "Overdue" not in row_of(page, "keyless")
    due = Connection.objects.get(name="old").key_due_at
    assert f'title="Due {due:%Y-%m-%d}: rotate the key"' in row_of(page, "old")


@pytest.mark.parametrize("rotation, names", [
    ("overdue", ["old", "strict"]),
    ("due_soon", ["aging"]),
])
def test_the_list_filters_by_rotation_status(client, django_user_model, keys_of_every_age, rotation, names):
    login_with_perms(client, django_user_model, "connections.view_connection")

    page = client.get(LIST_URL, {"rotation": rotation}).content.decode()

    shown = [name for name in ("fresh", "aging", "old", "strict", "lenient", "keyless")
             if f'<th scope="row" class="name">{name}' in page]
    assert shown == names
    assert f'href="?rotation={rotation}" aria-current="page"' in page


def test_an_unknown_filter_value_shows_everything(client, django_user_model, keys_of_every_age):
    login_with_perms(client, django_user_model, "connections.view_connection")

    page = client.get(LIST_URL, {"rotation": "<script>"}).content.decode()

    assert page.count('<th scope="row" class="name">') == 6
    assert "<script>" not in page


def test_a_filter_with_no_match_says_so_and_links_back(client, django_user_model, make_connection):
    login_with_perms(client, django_user_model, "connections.view_connection")
    make_connection("fresh")

    page = client.get(LIST_URL, {"rotation": "overdue"}).content.decode()

    assert "No connection matches this filter." in page and "No LLM connections yet" not in page


def test_pages_of_a_filtered_list_keep_the_filter(client, django_user_model, django_assert_num_queries):
    login_with_perms(client, django_user_model, "connections.view_connection")
    long_ago = timezone.now() - timedelta(days=200)
    Connection.objects.bulk_create(
        Connection(name=f"conn-{n:03d}", provider="openai", auth_method="api_key", secrets={"api_key": "x" * 30},
                   secrets_updated_at=long_ago, team=Team.objects.default())
        for n in range(60)
    )

    # session, user, user permissions, group permissions, count, page of connections, their endpoints, their usage
    with django_assert_num_queries(8):
        page = client.get(LIST_URL, {"rotation": "overdue"}).content.decode()

    assert 'href="?rotation=overdue&amp;page=2"' in page
    assert page.count(">Overdue</span>") == 50


# --- The form and the audit log ---------------------------------------------------------------------------


def test_the_edit_form_sets_a_maximum_age_and_the_audit_log_says_who(admin_client, admin_user, make_connection):
    connection = make_connection("openai-prod")
    data = {"name": "openai-prod", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
            "description": "", "key_max_age_days": "30"}

    response = admin_client.post(f"/settings/connections/{connection.name}/edit/", data)

    assert response.status_code == 302
    assert Connection.objects.get(name="openai-prod").key_max_age_days == 30
    entry = AuditEntry.objects.get(action=AuditEntry.Action.ROTATION_POLICY_CHANGED)
    assert entry.actor_name == "root" and entry.subject_name == "openai-prod"
    assert entry.fields == ["key_max_age_days: default → 30 days"]
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.UPDATED).exists()
    history = admin_client.get(f"/settings/connections/{connection.name}/history/").content.decode()
    assert "Rotation policy changed" in history


def test_the_create_form_offers_the_maximum_age_with_the_default_in_its_help(admin_client, settings):
    settings.KEY_MAX_AGE_DAYS = 60

    page = admin_client.get("/settings/connections/new/").content.decode()

    assert '<label for="id_key_max_age_days">Maximum key age (days)' in page
    assert "the server&#x27;s default, 60 days" in page


# --- The API ----------------------------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw-operator-123456")
    grant(user, *ALL_API_PERMISSIONS)
    return user


def test_the_api_returns_the_age_the_due_date_and_the_status(operator, keys_of_every_age):
    api = bearer_client(operator)

    items = {item["name"]: item for item in api.get(API).json()["results"]}

    old = Connection.objects.get(name="old")
    assert items["old"]["key_age_days"] == 100 and items["old"]["rotation_status"] == "overdue"
    assert items["old"]["key_due_at"] == old.key_due_at.isoformat().replace("+00:00", "Z")
    assert items["old"]["key_max_age_days"] is None
    assert items["strict"]["key_max_age_days"] == 7
    assert items["keyless"]["key_age_days"] is None and items["keyless"]["key_due_at"] is None
    assert items["keyless"]["rotation_status"] == "no_key"


def test_the_api_filters_by_rotation_status(operator, keys_of_every_age):
    api = bearer_client(operator)

    overdue = api.get(API, {"rotation": "overdue"}).json()
    refused = api.get(API, {"rotation": "someday"})

    assert [item["name"] for item in overdue["results"]] == ["old", "strict"]
    assert refused.status_code == 400 and "rotation" in refused.json()


def test_the_api_sets_and_clears_a_maximum_age_and_records_each_change(operator, make_connection):
    make_connection("openai-prod")
    api = bearer_client(operator)

    set_ = api.patch(f"{API}openai-prod/", {"key_max_age_days": 30}, format="json")
    cleared = api.patch(f"{API}openai-prod/", {"key_max_age_days": None}, format="json")
    refused = api.patch(f"{API}openai-prod/", {"key_max_age_days": 0}, format="json")

    assert set_.status_code == 200 and set_.json()["key_max_age_days"] == 30
    assert cleared.status_code == 200 and cleared.json()["key_max_age_days"] is None
    assert refused.status_code == 400 and "key_max_age_days" in refused.json()
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.ROTATION_POLICY_CHANGED).order_by("id")
    assert [(e.actor_name, e.fields) for e in entries] == [
        ("operator", ["key_max_age_days: default → 30 days"]),
        ("operator", ["key_max_age_days: 30 days → default"]),
    ]


def test_a_policy_change_with_other_changes_records_both(operator, make_connection):
    make_connection("openai-prod")
    api = bearer_client(operator)

    api.patch(f"{API}openai-prod/", {"key_max_age_days": 30, "description": "prod"}, format="json")

    actions = {e.action: e.fields for e in AuditEntry.objects.exclude(action=AuditEntry.Action.CREATED)}
    assert actions == {"updated": ["description"], "rotation_policy_changed": ["key_max_age_days: default → 30 days"]}
