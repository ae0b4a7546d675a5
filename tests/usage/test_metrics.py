"""`/metrics`: the gateway's calls in Prometheus' text format, for a metrics reader or an allowed address only."""

import json

import pytest
from django.contrib.auth.models import Permission
from prometheus_client.parser import text_string_to_metric_families

from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken
from usage.recorder import RECORDER


def post(client, path: str, body: object):
    return client.post(path, json.dumps(body), content_type="application/json")


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, as Prometheus' own parser reads the text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def metrics_reader(django_user_model):
    user = django_user_model.objects.create_user("prometheus", password="pw-prometheus-1234")
    user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    _, secret = ApiToken.issue(user=user)
    return secret


def scrape(client, token: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/metrics", **extra)


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_calls_latency_tokens_and_key_age_are_exported(site, gateway, openai_chat, fake_openai, metrics_reader):
    before = samples(scrape(site, metrics_reader).content.decode())
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    fake_openai.fail(500, "Oops.")
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    RECORDER.flush()
    response = scrape(site, metrics_reader)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=")
    after = samples(response.content.decode())

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("llmc_gateway_calls_total", endpoint="chat", provider="openai", status="200") == 1
    assert grew("llmc_gateway_calls_total", endpoint="chat", provider="openai", status="502") == 1
    assert grew("llmc_gateway_errors_total", endpoint="chat", provider="openai", code="upstream_error") == 1
    assert grew("llmc_gateway_call_duration_seconds_count", endpoint="chat", provider="openai") == 2
    assert grew("llmc_gateway_tokens_total", endpoint="chat", provider="openai", kind="prompt") == 5
    assert grew("llmc_gateway_tokens_total", endpoint="chat", provider="openai", kind="completion") == 5
    age = value(after, "llmc_connection_key_age_seconds", connection="openai-prod", provider="openai")
    assert 0 <= age < 600


def test_a_name_the_caller_made_up_is_never_a_label(site, gateway, openai_chat, metrics_reader):
    post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "made-up-by-the-caller"})
    RECORDER.flush()
    text = scrape(site, metrics_reader).content.decode()
    assert "made-up-by-the-caller" not in text
    assert value(samples(text), "llmc_gateway_calls_total", endpoint="", provider="", status="404") >= 1


def test_metrics_need_a_token_with_the_metrics_permission(site, db, admin_user, django_user_model):
    assert scrape(site).status_code == 401
    someone = django_user_model.objects.create_user("someone", password="pw-someone-1234")
    _, without = ApiToken.issue(user=someone)
    assert scrape(site, without).status_code == 403
    _, superuser = ApiToken.issue(user=admin_user)
    assert scrape(site, superuser).status_code == 200


def test_an_allowed_address_reads_metrics_without_a_token(site, db, settings):
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8", "127.0.0.1"]
    assert scrape(site).status_code == 200
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    assert scrape(site).status_code == 401


def test_behind_a_proxy_the_proxys_entry_counts_not_the_clients(site, db, settings):
    settings.BEHIND_PROXY = True
    settings.METRICS_ALLOWED_ADDRESSES = ["10.1.2.3"]
    assert site.get("/metrics", HTTP_X_FORWARDED_FOR="192.0.2.7, 10.1.2.3").status_code == 200
    assert site.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3, 192.0.2.7").status_code == 401
