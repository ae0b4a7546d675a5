"""Schema-driven fuzzing of the REST API and the gateway: schemathesis generates requests from our own OpenAPI
schema (valid and invalid ones), sent through the whole site as the server serves it (tests/asgi_client.py), and every answer
must conform to the schema (status code documented, content type, body schema), never be a 5xx and never
carry a secret.

`make test` runs a derandomized slice (the same ~1,300 requests on every run, under two minutes); `make fuzz` runs
the same test with FUZZ_EXAMPLES raised (at least 5,000 requests) and FUZZ_RANDOM=1 for new examples each run.
The gateway's seeded endpoints call a fake provider on 127.0.0.1; endpoints the fuzzer itself creates are
removed before each gateway request, so no call ever leaves this machine.
"""

import json
import os
import time
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from providers import catalogue
from connections.models import Connection
from endpoints.models import Endpoint
from tests.api_support import ALL_API_PERMISSIONS, assert_no_secret, grant
from tests.asgi_client import AsgiClient
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION_AND_MODE = int(os.environ.get("FUZZ_EXAMPLES", "30"))
MINIMUM_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "1000"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM") != "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Names the fuzzer may use besides its own inventions, so it reaches existing rows (and the gateway its fake).
KNOWN_NAMES = ["openai-prod", "chat", "embed", "missing"]
SEEDED_ENDPOINTS = {"chat": ("gpt-4o-mini", "chat"), "embed": ("text-embedding-3-small", "embeddings")}


def openapi_schema() -> schemathesis.BaseSchema:
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    return schemathesis.openapi.from_dict(document)


def seed(base_url: str) -> None:
    """The rows the fuzzer finds by name, as they were: restored whenever a generated request changed them."""
    connection = Connection.objects.filter(name="openai-prod").first()
    if connection is None:
        connection = Connection(name="openai-prod", provider="openai", auth_method="api_key")
    wanted = ("openai", "api_key", {"base_url": base_url})
    if (connection.provider, connection.auth_method, connection.config) != wanted or (
        not connection.secrets_decryptable or connection.secrets != {"api_key": PLANTED_KEY}
    ):
        connection.provider, connection.auth_method, connection.config = wanted
        connection.secrets = {"api_key": PLANTED_KEY}
        connection.save()
    for name, (model, task) in SEEDED_ENDPOINTS.items():
        endpoint, _ = Endpoint.objects.update_or_create(name=name, defaults={"task": task, "enabled": True})
        endpoint.destinations.all().delete()
        endpoint.destinations.create(connection=connection, model=model, weight=100)


def send(client: AsgiClient, case: schemathesis.Case):
    path = case.formatted_path
    if case.query:
        path += "?" + urlencode({key: str(value) for key, value in case.query.items()})
    kwargs = {}
    if case.body is not NOT_SET:
        raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body)
        kwargs = {"data": raw, "content_type": case.media_type or "application/json"}
    return path, kwargs, client.generic(case.method.upper(), path, **kwargs)


def as_schemathesis_response(method: str, path: str, kwargs: dict, response, elapsed: float) -> Response:
    """The test client's answer in the shape schemathesis' checks read."""
    content = b"".join(response.streaming_content) if response.streaming else response.content
    request = requests.Request(
        method, f"http://testserver{path}", data=kwargs.get("data"),
        headers={"Content-Type": kwargs["content_type"]} if "content_type" in kwargs else {},
    ).prepare()
    return Response(
        status_code=response.status_code,
        headers={name: [value] for name, value in response.headers.items()},
        content=content,
        request=request,
        elapsed=elapsed,
        verify=True,
        message=response.reason_phrase,
        encoding=response.charset,
    )


def aim_at_known_rows(case: schemathesis.Case, known: str | None, base_url: str) -> None:
    """Use a seeded name for the path's name, or for the gateway's `model`, in some of the cases; and some tests
    of typed credentials name the fake provider, so that they reach a provider's answer too."""
    if known is None:
        return
    if case.path == "/api/v1/connection-test/" and isinstance(case.body, dict):
        # The generated secrets (rejected by the fake, or refused as a header) or the key it accepts.
        secrets = case.body.get("secrets") if known == "openai-prod" else {"api_key": PLANTED_KEY}
        case.body = {"provider": "openai", "auth_method": "api_key", "config": {"base_url": base_url},
                     "secrets": secrets, **{k: v for k, v in case.body.items() if k == "description"}}
    for parameter in ("name", "endpoint"):
        if parameter in (case.path_parameters or {}):
            case.path_parameters[parameter] = known
    if case.path.startswith("/gateway/v1/") and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = known


def test_generated_requests_conform_to_the_schema_and_never_get_a_5xx_or_a_secret(django_user_model):
    user = django_user_model.objects.create_user("fuzzer")
    grant(user, *ALL_API_PERMISSIONS)
    _, token = ApiToken.issue(user=user)
    # Most cases come from a user with every permission; some from nobody and some from a user without any.
    _, bare_token = ApiToken.issue(user=django_user_model.objects.create_user("nobody"))
    clients = {"full": AsgiClient(HTTP_AUTHORIZATION=f"Bearer {token}"), "anonymous": AsgiClient(),
               "unprivileged": AsgiClient(HTTP_AUTHORIZATION=f"Bearer {bare_token}")}
    statuses: dict[int, int] = {}
    per_operation: dict[str, dict[int, int]] = {}
    failures: list[str] = []
    started = time.monotonic()

    with FakeOpenAI(keys={PLANTED_KEY}) as provider:
        seed(provider.base_url)
        for result in openapi_schema().get_all_operations():
            operation = result.ok()
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, derandomize=DERANDOMIZE, database=None,
                          deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode), known=st.sampled_from([*KNOWN_NAMES, None]),
                       caller=st.sampled_from(["full"] * 8 + ["anonymous", "unprivileged"]))
                def exercise(case, known, caller):
                    aim_at_known_rows(case, known, provider.base_url)
                    seed(provider.base_url)
                    if case.path.startswith("/gateway/"):
                        # Only the seeded endpoints exist for the gateway: they call the fake on 127.0.0.1.
                        Endpoint.objects.exclude(name__in=SEEDED_ENDPOINTS).delete()
                    sent = time.monotonic()
                    path, kwargs, response = send(clients[caller], case)
                    answer = as_schemathesis_response(case.method.upper(), path, kwargs, response,
                                                      time.monotonic() - sent)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    counts = per_operation.setdefault(operation.label, {})
                    counts[response.status_code] = counts.get(response.status_code, 0) + 1
                    try:
                        case.validate_response(answer, checks=CHECKS)
                    except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - collected: one run reports all
                        summary = " ".join(str(error).split())[:400]
                        failures.append(f"{case.method} {path} {case.body!r:.200} -> {response.status_code}: {summary}")
                    assert_no_secret(response)

                exercise()

    total = sum(statuses.values())
    print(f"\nfuzz: {total} requests in {time.monotonic() - started:.1f}s; statuses {dict(sorted(statuses.items()))}")
    for label, counts in sorted(per_operation.items()):
        print(f"  {label}: {dict(sorted(counts.items()))}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:25])
    assert total >= MINIMUM_REQUESTS
    assert any(label.startswith("POST /gateway/") for label in per_operation)
    assert per_operation["POST /api/v1/connection-test/"].get(200)  # typed credentials reached the fake
    assert len(provider.requests) > 0  # the gateway's generated calls reached the fake provider


# --- Property-based writes: valid shapes with arbitrary values reach the save path --------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)
ANY_TEXT = st.text(max_size=40)
# Secrets long enough to be masked, with a marker so a leak cannot be a coincidence.
SECRETS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=20, max_size=60).map(
    lambda text: f"sk-fz-{text}-end")


@st.composite
def connection_bodies(draw) -> dict:
    provider = draw(st.sampled_from(catalogue.PROVIDER_LIST))
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
