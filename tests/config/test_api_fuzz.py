"""Schema-driven fuzzing: schemathesis generates requests from our own OpenAPI schema (valid and invalid ones),
the Django test client sends them through the whole stack, and no answer may be a 5xx or carry a secret.

Derandomized (the same requests on every run) so CI is repeatable; about 1,300 requests in well under two minutes.
"""

import json
import time
from urllib.parse import urlencode

import pytest
import schemathesis
from schemathesis.core import NOT_SET
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from connections import providers
from connections.models import Connection
from endpoints.models import Endpoint
from tests.api_support import ALL_API_PERMISSIONS, assert_no_secret, grant
from tests.conftest import PLANTED_KEY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION_AND_MODE = 40
MINIMUM_REQUESTS = 1000
# Path names the fuzzer may use besides its own inventions, so it reaches existing rows too.
KNOWN_NAMES = ["openai-prod", "chat", "missing"]


def openapi_schema() -> schemathesis.BaseSchema:
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    return schemathesis.openapi.from_dict(document)


def seed() -> None:
    """The rows the fuzzer finds by name; restored whenever a generated DELETE or rename removed them."""
    connection = Connection.objects.filter(name="openai-prod").first()
    if connection is None:
        connection = Connection(name="openai-prod", provider="openai", auth_method="api_key")
        connection.update_secrets({"api_key": PLANTED_KEY})
        connection.save()
    if not Endpoint.objects.filter(name="chat").exists():
        Endpoint.objects.create(name="chat", connection=connection, model="gpt-4o-mini")


def send(client: APIClient, case: schemathesis.Case):
    path = case.formatted_path
    if case.query:
        path += "?" + urlencode({key: str(value) for key, value in case.query.items()})
    kwargs = {}
    if case.body is not NOT_SET:
        raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body)
        kwargs = {"data": raw, "content_type": case.media_type or "application/json"}
    return client.generic(case.method.upper(), path, **kwargs)


def test_generated_requests_never_get_a_5xx_or_a_secret(django_user_model):
    user = django_user_model.objects.create_user("fuzzer")
    grant(user, *ALL_API_PERMISSIONS)
    _, token = ApiToken.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    seed()
    statuses: dict[int, int] = {}
    failures: list[str] = []
    started = time.monotonic()

    for result in openapi_schema().get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, derandomize=True, database=None, deadline=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode), known=st.sampled_from([*KNOWN_NAMES, None]))
            def exercise(case, known):
                if known is not None and "name" in (case.path_parameters or {}):
                    case.path_parameters["name"] = known
                seed()
                response = send(client, case)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}")
                assert_no_secret(response)

            exercise()

    total = sum(statuses.values())
    print(f"\nfuzz: {total} requests in {time.monotonic() - started:.1f}s; statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(failures[:20])
    assert total >= MINIMUM_REQUESTS


# --- Property-based writes: valid shapes with arbitrary values reach the save path --------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)
ANY_TEXT = st.text(max_size=40)
# Secrets long enough to be masked, with a marker so a leak cannot be a coincidence.
SECRETS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=20, max_size=60).map(
    lambda text: f"sk-fz-{text}-end")


@st.composite
def connection_bodies(draw) -> dict:
    provider = draw(st.sampled_from(providers.PROVIDER_LIST))
    method = draw(st.sampled_from(provider.auth_methods))
    return {
        "name": draw(NAMES),
        "provider": provider.id,
        "auth_method": method.id,
        "secrets": {spec.name: draw(SECRETS) for spec in method.secret_fields},
        "config": {spec.name: draw(st.one_of(ANY_TEXT, st.just(spec.default or "x"))) for spec in method.config_fields},
        "description": draw(ANY_TEXT),
    }


def test_valid_shaped_writes_never_fail_or_leak(django_user_model):
    user = django_user_model.objects.create_user("writer")
    grant(user, *ALL_API_PERMISSIONS)
    _, token = ApiToken.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    statuses: dict[int, int] = {}

    @settings(max_examples=150, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(body=connection_bodies(), rotation=SECRETS, description=ANY_TEXT)
    def write(body, rotation, description):
        created = client.post("/api/v1/connections/", body, format="json")
        responses = [created]
        if created.status_code == 201:
            path = f"/api/v1/connections/{body['name']}/"
            field = next(iter(body["secrets"]), "api_key")
            responses += [
                client.patch(path, {"secrets": {field: rotation}, "description": description}, format="json"),
                client.get(path),
                client.delete(path),
            ]
        for response in responses:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.content[:300]
            for secret in [*body["secrets"].values(), rotation]:
                assert secret not in response.content.decode()

    write()
    print(f"\nproperty-based writes: {sum(statuses.values())} requests; statuses {dict(sorted(statuses.items()))}")
    assert statuses.get(201, 0) >= 20  # enough of them reach the save path
