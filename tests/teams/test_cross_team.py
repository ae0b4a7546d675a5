"""Teams: a member of team A gets nothing of team B's on any surface, not even by guessing names or ids, and
is answered exactly as for something that does not exist. Superusers see every team's rows."""

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEntry
from endpoints.models import Destination, Endpoint
from teams.models import Team
from tests.api_support import ALL_API_PERMISSIONS, grant
from tests.asgi_client import AsgiClient
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

MISSING = "no-such-thing"
# A page's CSRF token is masked afresh on every answer: it says nothing of what was asked for.
CSRF_TOKEN = re.compile(r'(name="csrfmiddlewaretoken" value=|name="csrf-token" content=)"[^"]*"')


def text_of(response) -> str:
    return CSRF_TOKEN.sub(r"\1", response.content.decode())


@pytest.fixture
def teams(make_connection, make_endpoint):
    a, b = Team.objects.create(name="team-a"), Team.objects.create(name="team-b")
    a_conn = make_connection("a-conn", team=a)
    b_conn = make_connection("b-conn", team=b)
    make_endpoint("a-endpoint", a_conn)
    make_endpoint("b-endpoint", b_conn)
    return a, b


@pytest.fixture
def alice(django_user_model, teams):
    """A staff member of team A only, holding every permission of the pages, API, admin and gateway."""
    user = django_user_model.objects.create_user("alice", password="pw-alice-123456", is_staff=True)
    user.teams.set([teams[0]])
    grant(user, *ALL_API_PERMISSIONS, "usage.view_usagerecord")
    return user


@pytest.fixture
def site_page(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def token(alice) -> str:
    return ApiToken.issue(user=alice)[1]


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def same_answer(get, other: str) -> None:
    """Asking for team B's `other` is answered as asking for a name that does not exist."""
    theirs, missing = get(other), get(MISSING)
    assert theirs.status_code == missing.status_code == 404
    assert text_of(theirs).replace(other, MISSING) == text_of(missing)


# --- Settings pages --------------------------------------------------------------------------------------


def test_the_lists_show_only_the_members_teams_rows(site_page):
    connections = site_page.get("/settings/connections/").content.decode()
    endpoints = site_page.get("/settings/endpoints/").content.decode()
    assert "a-conn" in connections and "b-conn" not in connections and "b-endpoint" not in connections
    assert "a-endpoint" in endpoints and "b-endpoint" not in endpoints and "b-conn" not in endpoints
    assert ">team-b<" not in connections + endpoints and "team=team-b" not in connections + endpoints


@pytest.mark.parametrize("path", ["/settings/connections/{}/edit/", "/settings/connections/{}/delete/",
                                  "/settings/connections/{}/history/"])
def test_another_teams_connection_pages_are_not_found(site_page, path):
    same_answer(lambda name: site_page.get(path.format(name)), "b-conn")


@pytest.mark.parametrize("path", ["/settings/endpoints/{}/edit/", "/settings/endpoints/{}/delete/"])
def test_another_teams_endpoint_pages_are_not_found(site_page, path):
    same_answer(lambda name: site_page.get(path.format(name)), "b-endpoint")


def test_another_teams_connection_can_be_neither_tested_deleted_nor_edited(site_page):
    same_answer(lambda name: site_page.post(f"/settings/connections/{name}/test/"), "b-conn")
    same_answer(lambda name: site_page.post(f"/settings/connections/{name}/delete/"), "b-conn")
    same_answer(lambda name: site_page.post(f"/settings/connections/{name}/edit/", {"name": "taken-over"}), "b-conn")
    assert Team.objects.get(name="team-b").connections.get().name == "b-conn"


def test_the_method_fields_of_another_teams_connection_are_not_found(site_page):
    same_answer(lambda name: site_page.get("/settings/connections/fields/",
                                      {"provider": "openai", "auth_method": "api_key", "connection": name}), "b-conn")


def test_the_endpoint_form_offers_only_the_teams_connections_and_refuses_another_teams(site_page):
    form = site_page.get("/settings/endpoints/new/").content.decode()
    assert "a-conn" in form and "b-conn" not in form and "team-b" not in form
    b_conn = Team.objects.get(name="team-b").connections.get()
    response = site_page.post("/settings/endpoints/new/", {
        "name": "sneaky", "task": "chat", "enabled": "on", "deadline_seconds": "60", "budget_period": "month",
        "destinations-TOTAL_FORMS": "1", "destinations-INITIAL_FORMS": "0",
        "destinations-0-connection": str(b_conn.pk), "destinations-0-model": "m", "destinations-0-role": "primary",
        "destinations-0-weight": "100",
    })
    assert response.status_code == 200 and not Endpoint.objects.filter(name="sneaky").exists()
    assert "b-conn" not in response.content.decode()
    # The connections list's link to a new endpoint does not preselect another team's connection by name.
    preselected = site_page.get("/settings/endpoints/new/?connection=b-conn").content.decode()
    assert "b-conn" not in preselected


def test_the_audit_log_page_shows_only_the_teams_entries(site_page):
    log = site_page.get("/settings/audit/").content.decode()
    assert "a-conn" in log and "b-conn" not in log and "b-endpoint" not in log


# --- REST API --------------------------------------------------------------------------------------------


def test_the_api_lists_only_the_teams_rows(api):
    connections = api.get("/api/v1/connections/").json()
    endpoints = api.get("/api/v1/endpoints/").json()
    assert [c["name"] for c in connections["results"]] == ["a-conn"]
    assert [e["name"] for e in endpoints["results"]] == ["a-endpoint"]
    assert api.get("/api/v1/connections/", {"team": "team-b"}).json()["count"] == 0
    entries = api.get("/api/v1/audit/").json()["results"]
    assert entries and all("b-" not in json.dumps(entry) for entry in entries)


@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/connections/{}/"), ("patch", "/api/v1/connections/{}/"), ("put", "/api/v1/connections/{}/"),
    ("delete", "/api/v1/connections/{}/"), ("post", "/api/v1/connections/{}/test/"),
    ("get", "/api/v1/connections/{}/history/"),
])
def test_another_teams_connection_is_not_found_in_the_api(api, method, path):
    same_answer(lambda name: getattr(api, method)(path.format(name), {"description": "mine"}, format="json"),
                "b-conn")


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_another_teams_endpoint_is_not_found_in_the_api(api, method):
    same_answer(lambda name: getattr(api, method)(f"/api/v1/endpoints/{name}/", {"enabled": False}, format="json"),
                "b-endpoint")
    assert Endpoint.objects.get(name="b-endpoint").enabled


def test_an_endpoint_cannot_name_another_teams_connection_nor_team_in_the_api(api):
    def create(connection: str, team: str | None = None):
        body = {"name": "sneaky", "connection": connection, "model": "m", **({"team": team} if team else {})}
        return api.post("/api/v1/endpoints/", body, format="json")

    theirs, missing = create("b-conn"), create(MISSING)
    assert theirs.status_code == missing.status_code == 400
    assert json.dumps(theirs.json()).replace("b-conn", MISSING) == json.dumps(missing.json())
    theirs, missing = create("a-conn", "team-b"), create("a-conn", MISSING)
    assert theirs.status_code == missing.status_code == 400
    assert json.dumps(theirs.json()).replace("team-b", MISSING) == json.dumps(missing.json())
    assert not Endpoint.objects.filter(name="sneaky").exists()


def test_a_name_taken_by_another_team_is_refused_as_one_taken_in_ones_own(api):
    """Names are unique across teams (calls and URLs name a connection or endpoint alone): a clash says only
    that the name is taken, the same words whoever holds it."""
    def create(name: str):
        return api.post("/api/v1/connections/", {"name": name, "provider": "openai", "auth_method": "api_key",
                                                 "secrets": {"api_key": "sk-new-0123456789abcdefghij"}}, format="json")

    theirs, own = create("b-conn"), create("a-conn")
    assert theirs.status_code == own.status_code == 400
    assert theirs.json() == own.json()


# --- Admin -----------------------------------------------------------------------------------------------


def test_the_admin_shows_and_opens_only_the_teams_rows(site_page, teams):
    for model, theirs in (("connection", "b-conn"), ("endpoint", "b-endpoint")):
        app = f"{model}s"
        changelist = site_page.get(reverse(f"admin:{app}_{model}_changelist")).content.decode()
        assert theirs not in changelist and "team-b" not in changelist
        their_pk = getattr(teams[1], f"{model}s").get().pk
        theirs_answer = site_page.get(reverse(f"admin:{app}_{model}_change", args=[their_pk]))
        missing_answer = site_page.get(reverse(f"admin:{app}_{model}_change", args=[999999]))
        assert theirs_answer.status_code == missing_answer.status_code == 302
        assert site_page.get(theirs_answer.url).content.decode().replace(str(their_pk), "999999").count(theirs) == 0
    audit = site_page.get(reverse("admin:audit_auditentry_changelist")).content.decode()
    assert "b-conn" not in audit and "b-endpoint" not in audit


def test_the_admins_destination_choices_and_teams_are_the_members(site_page, teams):
    form = site_page.get(reverse("admin:endpoints_endpoint_add")).content.decode()
    assert "team-b" not in form
    response = site_page.get(reverse("admin:autocomplete"), {
        "term": "", "app_label": "endpoints", "model_name": "destination", "field_name": "connection"})
    assert [r["text"] for r in response.json()["results"]] == ["a-conn"]


# --- Gateway ---------------------------------------------------------------------------------------------


def test_the_gateway_answers_another_teams_endpoint_as_a_missing_one(token, teams):
    gateway = AsgiClient(HTTP_AUTHORIZATION=f"Bearer {token}")

    def chat(name):
        return gateway.post("/gateway/v1/chat/completions", json.dumps({**CHAT_BODY, "model": name}),
                            content_type="application/json")

    same_answer(chat, "b-endpoint")
    assert chat("b-endpoint").json()["error"]["code"] == "endpoint_not_found"
    same_answer(lambda name: gateway.post(f"/gateway/{name}/invocations", json.dumps(CHAT_BODY),
                                          content_type="application/json"), "b-endpoint")
    same_answer(lambda name: gateway.post("/gateway/anthropic/v1/messages", json.dumps(
        {"model": name, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}),
        content_type="application/json"), "b-endpoint")
    models = [m["id"] for m in gateway.get("/gateway/v1/models").json()["data"]]
    assert models == ["a-endpoint"]


def test_a_superusers_token_calls_every_teams_endpoints(admin_user, teams):
    gateway = AsgiClient(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=admin_user)[1]}")
    assert [m["id"] for m in gateway.get("/gateway/v1/models").json()["data"]] == ["a-endpoint", "b-endpoint"]


# --- The model's rule, superusers ------------------------------------------------------------------------


def test_an_endpoint_uses_only_its_own_teams_connections(teams):
    a, b = teams
    endpoint = Endpoint(name="mixed", task="chat", team=a)
    with pytest.raises(ValidationError, match="not a connection of team team-a"):
        endpoint.check_destinations([Destination(connection=b.connections.get(), model="m", weight=100)])


def test_a_connection_in_use_cannot_move_to_another_team(teams):
    a, b = teams
    connection = a.connections.get()
    connection.team = b
    with pytest.raises(ValidationError, match="a-endpoint"):
        connection.full_clean()


def test_superusers_see_every_team_and_filter_by_team(admin_client, teams):
    everything = admin_client.get("/settings/connections/").content.decode()
    assert "a-conn" in everything and "b-conn" in everything
    only_b = admin_client.get("/settings/connections/?team=team-b").content.decode()
    assert "b-conn" in only_b and "a-conn" not in only_b
    only_b = admin_client.get("/settings/endpoints/?team=team-b").content.decode()
    assert "b-endpoint" in only_b and "a-endpoint" not in only_b
    api = admin_client.get("/api/v1/endpoints/?team=team-a").json()
    assert [e["name"] for e in api["results"]] == ["a-endpoint"]


# --- list_connections --------------------------------------------------------------------------------------


def test_list_connections_lists_one_teams_connections(teams):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("list_connections", "--team", "team-a", stdout=out)
    assert "a-conn" in out.getvalue() and "b-conn" not in out.getvalue()
    with pytest.raises(CommandError, match="no team named 'nope'"):
        call_command("list_connections", "--team", "nope", stdout=StringIO())


def test_the_tokens_page_offers_and_takes_only_the_teams_endpoints(site_page, teams):
    page = site_page.get("/settings/tokens/").content.decode()
    assert "a-endpoint" in page and "b-endpoint" not in page
    theirs = Endpoint.objects.get(name="b-endpoint")
    response = site_page.post("/settings/tokens/", {"scope": "gateway", "endpoints": [theirs.pk]})
    assert "Select a valid choice" in response.content.decode() and "b-endpoint" not in response.content.decode()
    assert not ApiToken.objects.filter(endpoints=theirs).exists()


def test_the_token_admin_names_only_the_teams_endpoints(site_page, alice, django_user_model, teams):
    grant(alice, "tokens.view_apitoken")
    bob = django_user_model.objects.create_user("bob")
    bob.teams.set([teams[1]])
    bobs, _ = ApiToken.issue(user=bob)
    bobs.endpoints.set(Endpoint.objects.all())
    view = site_page.get(reverse("admin:tokens_apitoken_change", args=[bobs.pk]))
    page = view.content.decode()
    assert view.status_code == 200
    assert "a-endpoint" in page and "b-endpoint" not in page


def test_the_lists_see_a_change_of_teams_at_once(api, site_page, alice, teams, django_user_model):
    """Lists are read by statements compiled once: who sees what is still decided by every request."""
    a, b = teams

    def listed() -> tuple:
        pages = (site_page.get("/settings/connections/").content.decode(),
                 site_page.get("/settings/endpoints/").content.decode())
        return ([c["name"] for c in api.get("/api/v1/connections/").json()["results"]],
                [e["name"] for e in api.get("/api/v1/endpoints/?page_size=7").json()["results"]],
                sorted(name for name in ("a-conn", "b-conn", "a-endpoint", "b-endpoint")
                       if any(f'class="name">{name} ' in page for page in pages)))

    assert listed() == (["a-conn"], ["a-endpoint"], ["a-conn", "a-endpoint"])
    alice.teams.add(b)
    assert listed() == (["a-conn", "b-conn"], ["a-endpoint", "b-endpoint"],
                        ["a-conn", "a-endpoint", "b-conn", "b-endpoint"])
    alice.teams.remove(a)
    assert listed() == (["b-conn"], ["b-endpoint"], ["b-conn", "b-endpoint"])
    alice.teams.clear()
    assert listed() == ([], [], [])
    django_user_model.objects.filter(pk=alice.pk).update(is_superuser=True)
    assert listed() == (["a-conn", "b-conn"], ["a-endpoint", "b-endpoint"],
                        ["a-conn", "a-endpoint", "b-conn", "b-endpoint"])
