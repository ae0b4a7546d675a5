"""ConnectionForm: registry-driven fields, masks as placeholders, blank keeps, selection changes re-render."""

from connections.forms import ConnectionForm
from connections.models import Connection
from tests.conftest import PLANTED_KEY

AZURE = {
    "name": "azure-prod",
    "provider": "openai",
    "auth_method": "azure",
    "selection": "openai/azure",
    "secrets.api_key": "azure-key-0123456789abcdefgh",
    "config.endpoint_url": "https://my-resource.openai.azure.com",
    "config.api_version": "2024-10-21",
}


def test_fields_follow_the_provider_and_auth_method(db):
    assert [f.label for f in ConnectionForm().method_fields] == ["API key", "Organization", "Base URL"]
    azure = ConnectionForm(data={"provider": "openai", "auth_method": "azure"})
    assert [f.label for f in azure.method_fields] == ["API key", "Endpoint URL", "API version"]
    vertex = ConnectionForm(data={"provider": "vertex_ai"})
    assert [f.label for f in vertex.method_fields] == [
        "Service account key (JSON)", "Project ID", "Location", "Base URL"
    ]
    assert vertex["config.location"].field.widget.attrs["placeholder"] == "us-central1"


def test_the_auth_method_is_hidden_when_the_provider_has_only_one(db):
    assert ConnectionForm(data={"provider": "anthropic"})["auth_method"].is_hidden
    assert not ConnectionForm(data={"provider": "openai"})["auth_method"].is_hidden


def test_secret_inputs_are_password_inputs_that_never_render_the_value(make_connection):
    connection = make_connection(name="planted")
    html = ConnectionForm(instance=connection).as_div()
    assert 'type="password"' in html
    assert PLANTED_KEY not in html
    assert 'placeholder="sk-...WXYZ"' in html
    bound = ConnectionForm(data={**AZURE, "name": "x", "config.api_version": "bad"})
    assert not bound.is_valid()
    assert "azure-key-0123456789abcdefgh" not in bound.as_div()


def test_a_valid_form_creates_the_connection(db):
    form = ConnectionForm(data=AZURE)
    assert form.is_valid(), form.errors
    connection = form.save()
    assert connection.get_secrets() == {"api_key": "azure-key-0123456789abcdefgh"}
    assert connection.config == {"endpoint_url": "https://my-resource.openai.azure.com", "api_version": "2024-10-21"}


def test_errors_are_attached_to_their_fields(db):
    form = ConnectionForm(data={**AZURE, "name": "Azure", "secrets.api_key": "", "config.endpoint_url": "http://x.com"})
    assert not form.is_valid()
    assert set(form.errors) == {"name", "secrets.api_key", "config.endpoint_url"}
    assert not Connection.objects.exists()


def test_a_blank_secret_keeps_the_stored_one(make_connection):
    connection = make_connection(name="keep")
    form = ConnectionForm(
        data={"name": "keep", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
              "secrets.api_key": "", "description": "edited"},
        instance=Connection.objects.get(pk=connection.pk),
    )
    assert form.is_valid(), form.errors
    assert form.save().get_secrets() == {"api_key": PLANTED_KEY}


def test_the_echoed_mask_is_refused(make_connection):
    connection = make_connection(name="echo")
    form = ConnectionForm(
        data={"name": "echo", "provider": "openai", "auth_method": "api_key", "secrets.api_key": "sk-...WXYZ"},
        instance=Connection.objects.get(pk=connection.pk),
    )
    assert not form.is_valid()
    assert "masked value" in form.errors["secrets.api_key"][0]


def test_a_changed_provider_re_renders_the_fields_instead_of_saving(db):
    # Without JavaScript: the form was rendered for OpenAI · API key, the user picked Google Vertex AI.
    form = ConnectionForm(data={"name": "vertex", "provider": "vertex_ai", "selection": "openai/api_key",
                                "description": "kept"})
    assert not form.is_valid()
    assert "Google Vertex AI (GCP)" in form.non_field_errors()[0]
    assert "config.project_id" in form.fields and "secrets.api_key" not in form.fields
    html = form.as_div()
    assert 'value="vertex"' in html and "kept" in html and 'value="vertex_ai/service_account"' in html
    assert not Connection.objects.exists()


def test_an_auth_method_of_another_provider_falls_back_to_the_providers_first(db):
    form = ConnectionForm(data={"provider": "anthropic", "auth_method": "azure"})
    assert form.method.id == "api_key"
