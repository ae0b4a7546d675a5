"""The list pages remember rows and the text around them, yet show any change on the next request, whoever made it."""

import re

import pytest
from django.contrib.sessions.models import Session

from connections.models import Connection
from endpoints.models import Destination, Endpoint
from teams.models import Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123456"))
    return client


@pytest.fixture
def listed():
    team = Team.objects.default()
    connection = Connection.objects.create(name="openai-prod", provider="openai", auth_method="api_key",
                                           secrets={"api_key": "sk-remembered-0123456789abcd"}, team=team,
                                           description="first words")
    endpoint = Endpoint.objects.create(name="chat", task="chat", team=team)
    Destination.objects.create(endpoint=endpoint, connection=connection, model="gpt-4o-mini", role="primary",
                               weight=100)
    return connection, endpoint


def test_a_row_changed_by_another_process_shows_changed(root, listed):
    connection, endpoint = listed
    assert "first words" in root.get("/settings/connections/").content.decode()
    # As another process writes: nothing in this process hears of it.
    Connection.objects.filter(pk=connection.pk).update(description="second words", environment="staging")
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, requests_per_minute=60)
    Destination.objects.filter(endpoint=endpoint).update(model="gpt-4o")
    page = root.get("/settings/connections/").content.decode()
    assert "second words" in page and "first words" not in page and "env-staging" in page
    assert 'class="disabled-endpoint">chat</a> <span class="muted">(disabled)</span>' in page
    page = root.get("/settings/endpoints/").content.decode()
    assert '<span class="badge">No</span>' in page and "<td>60/min</td>" in page and ">gpt-4o</code>" in page


def test_the_text_around_the_rows_follows_the_teams_and_the_user(root, listed, client, django_user_model):
    assert "default</a>" in root.get("/settings/endpoints/").content.decode()
    Team.objects.filter(pk=Team.objects.default().pk).update(name="renamed")
    page = root.get("/settings/endpoints/").content.decode()
    assert "renamed</a>" in page and "default</a>" not in page
    other = django_user_model.objects.create_superuser("other-root", password="pw-root-123456")
    client.force_login(other)
    page = client.get("/settings/endpoints/").content.decode()
    assert 'title="Signed in as other-root"' in page and "Signed in as root" not in page


def test_each_response_has_a_fresh_csrf_token_and_messages_still_show(root, listed):
    tokens = set()
    for _ in range(2):
        page = root.get("/settings/connections/").content.decode()
        tokens |= set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page))
    assert len(tokens) >= 4  # the logout form's and the Test form's, masked afresh on each response
    response = root.post("/settings/connections/openai-prod/delete/", follow=True)
    page = response.content.decode()
    assert "Connection “openai-prod” was not deleted" in page or "still use it" in page
    assert root.get("/settings/connections/").content.decode().count('class="message') == 0  # shown once
    assert Session.objects.count() == 1


def test_a_page_is_the_same_remembered_or_not(root, listed):
    first = root.get("/settings/connections/?environment=production").content.decode()
    again = root.get("/settings/connections/?environment=production").content.decode()
    mask = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert mask.sub("", first) == mask.sub("", again)
    assert 'aria-current="page">Production</a>' in again
