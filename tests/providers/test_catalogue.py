"""The registry's validation, for every provider and auth method, as every surface applies it."""

import json

import pytest
from django.core.exceptions import ValidationError

from providers import catalogue
from connections.models import Connection
from tests.providers.catalogue_cases import (
    SERVICE_ACCOUNT,
    all_methods,
    method_id,
    valid_config,
    valid_secrets,
)

METHODS = all_methods()


def errors_of(provider_id, method_id_, secrets, config) -> dict[str, list[str]]:
    connection = Connection(name="case", provider=provider_id, auth_method=method_id_, config=config)
    connection.update_secrets(secrets)
    try:
        connection.clean()
    except ValidationError as error:
        return error.message_dict
    return {}


def test_the_catalogue_holds_every_documented_provider():
    assert list(catalogue.PROVIDERS) == [
        "openai", "anthropic", "gemini", "vertex_ai", "bedrock", "mistral", "cohere", "databricks",
        "xai", "groq", "deepseek", "openrouter", "together_ai", "ollama", "openai_compatible",
    ]
    assert catalogue.PROVIDERS["openai"].auth_method_ids == ("api_key", "azure", "azure_ad")
    assert catalogue.PROVIDERS["anthropic"].tasks == ("chat",)
    assert catalogue.PROVIDERS["together_ai"].tasks == ("chat", "embeddings")


def test_every_field_has_its_documented_label():
    azure = catalogue.PROVIDERS["openai"].auth_method("azure")
    assert [(f.name, f.label) for f in azure.config_fields] == [
        ("endpoint_url", "Endpoint URL"), ("api_version", "API version")
    ]
    vertex = catalogue.PROVIDERS["vertex_ai"].auth_method("service_account")
    assert vertex.secret_fields[0].label == "Service account key (JSON)"
    assert vertex.config_field("location").default == "us-central1"
    assert catalogue.PROVIDERS["databricks"].auth_method("token").config_field("host").label == "Workspace URL"


@pytest.mark.parametrize("case", METHODS, ids=method_id)
def test_a_complete_valid_connection_passes(case):
    provider, method = case
    assert errors_of(provider.id, method.id, valid_secrets(method), valid_config(method)) == {}


@pytest.mark.parametrize("case", METHODS, ids=method_id)
def test_only_required_config_is_needed(case):
    provider, method = case
    assert errors_of(provider.id, method.id, valid_secrets(method), valid_config(method, required_only=True)) == {}


@pytest.mark.parametrize(
    "provider_id, method_id_, field",
    [
        (provider.id, method.id, f"secrets.{f.name}")
        for provider, method in METHODS
        for f in method.secret_fields
        if f.required
    ]
    + [
        (provider.id, method.id, f"config.{f.name}")
        for provider, method in METHODS
        for f in method.config_fields
        if f.required
    ],
)
def test_each_required_field_missing_is_named(provider_id, method_id_, field):
    method = catalogue.PROVIDERS[provider_id].auth_method(method_id_)
    secrets, config = valid_secrets(method), valid_config(method)
    group, name = field.split(".")
    (secrets if group == "secrets" else config).pop(name)
    errors = errors_of(provider_id, method_id_, secrets, config)
    assert list(errors) == [field]
    assert "is required" in errors[field][0]


def test_every_provider_accepts_a_base_url_override():
    for provider, method in METHODS:
        assert any(method.config_field(name) for name in catalogue.ADDRESS_FIELDS), method_id((provider, method))


def azure_errors(**config_changes) -> dict:
    method = catalogue.PROVIDERS["openai"].auth_method("azure_ad")
    return errors_of("openai", "azure_ad", valid_secrets(method), {**valid_config(method), **config_changes})


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://my-resource.openai.azure.com", "Use https://"),
        ("https://10.0.0.5", "private"),
        ("https://192.168.1.10/openai", "private"),
        ("https://169.254.169.254", "private"),
        ("https://[::1]:8443", "private"),
        ("https://[::ffff:10.0.0.1]", "private"),
        ("https://[64:ff9b::a9fe:a9fe]", "private"),  # NAT64 of the metadata address
        ("https://[64:ff9b::169.254.169.254]", "private"),
        ("https://[::7f00:2]", "private"),  # IPv4-compatible loopback
        ("https://[2002:a9fe:a9fe::1]", "private"),  # 6to4
        ("https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]", "private"),  # Teredo, client 10.0.0.1
        ("https://2130706433", "private"),
        ("https://0x7f.0.0.1", "private"),
        ("https://localhost:8080", "private"),
        ("https://metadata.google.internal", "private"),
        ("https://vault.corp.internal", "private"),
        ("https://user:pass@my-resource.openai.azure.com", "credentials"),
        ("https://my-resource.openai.azure.com/?api-key=x", "query"),
        ("ftp://my-resource.openai.azure.com", "valid URL"),
        ("my-resource.openai.azure.com", "valid URL"),
        ("https://", "valid URL"),
        ("https://host:99999", "valid URL"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused(url, fragment, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []
    errors = azure_errors(endpoint_url=url)
    assert fragment in errors["config.endpoint_url"][0]


def test_hosts_listed_in_allowed_private_hosts_may_be_private_and_plain_http(settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1", "llm.corp.internal"]
    assert azure_errors(endpoint_url="http://127.0.0.1:8001") == {}
    assert azure_errors(endpoint_url="https://llm.corp.internal") == {}
    assert "private" in azure_errors(endpoint_url="https://10.1.1.1")["config.endpoint_url"][0]


def test_loopback_http_is_allowed_only_for_local_servers(settings):
    settings.ALLOWED_PRIVATE_HOSTS = []
    for provider_id, method_id_ in [("ollama", "none"), ("openai_compatible", "none")]:
        assert errors_of(provider_id, method_id_, {}, {"base_url": "http://localhost:8000/v1"}) == {}
        assert errors_of(provider_id, method_id_, {}, {"base_url": "http://127.0.0.1:11434"}) == {}
        assert "private" in errors_of(provider_id, method_id_, {}, {"base_url": "https://10.0.0.2:8000"})[
            "config.base_url"
        ][0]
    openai = catalogue.PROVIDERS["openai"].auth_method("api_key")
    errors = errors_of("openai", "api_key", valid_secrets(openai), {"base_url": "http://localhost:8000"})
    assert "Use https://" in errors["config.base_url"][0]


@pytest.mark.parametrize("version", ["2024-10-21", "2024-10-01-preview"])
def test_azure_api_versions_of_both_shapes_pass(version):
    assert azure_errors(api_version=version) == {}


@pytest.mark.parametrize(
    "field, value",
    [
        ("api_version", "2024-10"),
        ("api_version", "v1"),
        ("api_version", "2024-10-21-beta"),
        ("tenant_id", "not-a-guid"),
        ("client_id", "00000000-1111-2222-3333-44444444444"),
    ],
)
def test_malformed_azure_values_are_named(field, value):
    assert list(azure_errors(**{field: value})) == [f"config.{field}"]


@pytest.mark.parametrize(
    "project_id, ok",
    [
        ("my-project-123", True),
        ("abcdef", True),
        ("a" * 30, True),
        ("abcde", False),
        ("a" * 31, False),
        ("1project", False),
        ("my-project-", False),
        ("My-Project", False),
        ("my_project", False),
    ],
)
def test_gcp_project_ids_follow_gcps_rules(project_id, ok):
    method = catalogue.PROVIDERS["vertex_ai"].auth_method("service_account")
    errors = errors_of("vertex_ai", "service_account", valid_secrets(method), {"project_id": project_id})
    assert (errors == {}) is ok
    if not ok:
        assert list(errors) == ["config.project_id"]


@pytest.mark.parametrize("region, ok", [("us-east-1", True), ("eu-central-1", True), ("us-gov-west-1", True),
                                        ("useast1", False), ("US-EAST-1", False), ("us-east", False)])
def test_aws_regions_have_the_aws_shape(region, ok):
    method = catalogue.PROVIDERS["bedrock"].auth_method("access_key")
    errors = errors_of("bedrock", "access_key", valid_secrets(method), {"region": region})
    assert (errors == {}) is ok


def test_the_bedrock_session_token_is_optional():
    method = catalogue.PROVIDERS["bedrock"].auth_method("access_key")
    secrets = valid_secrets(method)
    del secrets["aws_session_token"]
    assert errors_of("bedrock", "access_key", secrets, {"region": "us-east-1"}) == {}


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("not json", "Paste the service account key"),
        ("[1, 2]", "JSON object"),
        (json.dumps({**SERVICE_ACCOUNT, "type": "authorized_user"}), "not a service account"),
        (json.dumps({k: v for k, v in SERVICE_ACCOUNT.items() if k != "private_key"}), "private_key"),
        (json.dumps({k: v for k, v in SERVICE_ACCOUNT.items() if k != "client_email"}), "client_email"),
        (json.dumps({**SERVICE_ACCOUNT, "token_uri": "http://169.254.169.254/token"}), "token_uri"),
        (json.dumps({**SERVICE_ACCOUNT, "token_uri": "https://10.0.0.1/token"}), "token_uri"),
    ],
)
def test_wrong_service_accounts_are_refused(value, fragment):
    errors = errors_of("vertex_ai", "service_account", {"service_account_json": value}, {"project_id": "my-project-1"})
    assert list(errors) == ["secrets.service_account_json"]
    assert fragment in errors["secrets.service_account_json"][0]


def test_a_service_account_may_be_given_as_an_object():
    connection = Connection(name="v", provider="vertex_ai", auth_method="service_account",
                            config={"project_id": "my-project-1"})
    connection.update_secrets({"service_account_json": SERVICE_ACCOUNT})
    connection.clean()
    assert json.loads(connection.secrets["service_account_json"]) == SERVICE_ACCOUNT


def test_unknown_provider_method_and_fields_are_named():
    with pytest.raises(ValidationError) as caught:
        catalogue.resolve("nope", "api_key")
    assert "Unknown provider 'nope'" in caught.value.message_dict["provider"][0]
    errors = errors_of("anthropic", "azure", {}, {})
    assert "has no authentication method 'azure'" in errors["auth_method"][0]
    errors = errors_of("anthropic", "api_key", {"api_key": "k" * 30, "password": "x"}, {"colour": "blue"})
    assert "Unknown secret field 'password'" in errors["secrets.password"][0]
    assert "Unknown field 'colour'" in errors["config.colour"][0]


def test_an_unknown_provider_is_refused_by_full_validation(db):
    connection = Connection(name="x", provider="nope", auth_method="api_key")
    with pytest.raises(ValidationError) as caught:
        connection.full_clean()
    assert caught.value.message_dict["provider"] == ["Unknown provider 'nope'."]


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "is required"),
        ("   ", "is required"),
        ("x" * (16 * 1024 + 1), "longer than 16 KiB"),
        ("sk-...wxyz", "masked value"),
        ("********", "masked value"),
        ("cannot be decrypted", "masked value"),
        (12345, "must be a string"),
    ],
)
def test_bad_secret_values_are_refused(value, fragment):
    connection = Connection(name="a", provider="anthropic", auth_method="api_key", secrets={"api_key": value})
    with pytest.raises(ValidationError) as caught:
        connection.clean()
    assert fragment in caught.value.message_dict["secrets.api_key"][0]


def test_secrets_and_config_are_trimmed():
    method = catalogue.PROVIDERS["openai"].auth_method("azure")
    connection = Connection(name="a", provider="openai", auth_method="azure",
                            config={"endpoint_url": "  https://r.openai.azure.com ", "api_version": "2024-10-21\n"},
                            secrets={"api_key": "  sk-trimmed-0123456789abcdef \n"})
    connection.clean()
    assert connection.secrets == {"api_key": "sk-trimmed-0123456789abcdef"}
    assert connection.config == {"endpoint_url": "https://r.openai.azure.com", "api_version": "2024-10-21"}
    assert method.secret_fields[0].name == "api_key"


def test_wrong_types_for_secrets_or_config_are_named():
    connection = Connection(name="a", provider="anthropic", auth_method="api_key", secrets=["k"], config=[1])
    with pytest.raises(ValidationError) as caught:
        connection.clean()
    assert set(caught.value.message_dict) == {"secrets", "config"}
