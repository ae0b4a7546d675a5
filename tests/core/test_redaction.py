"""Redaction: no credential reaches a log (auth headers, bearer and `llmc_` tokens, the secrets in use), and
provider text loses every form of a secret and anything shaped like a key."""

import base64
import logging
from io import StringIO
from urllib.parse import quote, quote_plus

import pytest
from django.conf import settings

from core.redaction import RedactSecrets, redact, redact_log_text
from providers.catalogue import PROVIDERS
from tests.conftest import PLANTED_KEY

TOKEN = "llmc_Zx9-Qw_ErTy1234567890abcdefghijklmnopqrstu"


@pytest.fixture
def console():
    """The console handler settings.LOGGING configured on the root logger, writing into a buffer at DEBUG."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(isinstance(f, RedactSecrets) for f in h.filters))
    buffer = StringIO()
    previous_stream, previous_level = handler.setStream(buffer), root.level
    root.setLevel(logging.DEBUG)
    yield buffer
    handler.setStream(previous_stream)
    root.setLevel(previous_level)


def test_every_configured_handler_has_the_filter():
    assert settings.LOGGING["filters"]["redact_secrets"] == {"()": "core.redaction.RedactSecrets"}
    for name, handler in settings.LOGGING["handlers"].items():
        assert "redact_secrets" in handler.get("filters", []), name
    # Django's default handlers (which would print first, unfiltered) are gone: its records go to ours.
    assert logging.getLogger("django").handlers == [] and logging.getLogger("django").propagate


def test_header_values_and_tokens_in_messages_and_args_come_out_redacted(console):
    log = logging.getLogger("connections.upstream")

    log.debug("calling %s with headers %s", "https://api.example/v1", {"Authorization": f"Bearer {PLANTED_KEY}",
                                                                     "x-api-key": PLANTED_KEY, "accept": "json"})
    log.debug("Authorization: %s", f"Bearer {PLANTED_KEY}")
    log.info("x-goog-api-key: %s", PLANTED_KEY)
    log.info("sent api-key=%(key)s to Azure", {"key": PLANTED_KEY})
    log.warning("raw headers %r", [(b"authorization", f"Basic {PLANTED_KEY}".encode()), (b"host", b"example")])
    log.warning("token %s was used", TOKEN)
    log.error(f"upstream said: invalid token Bearer {PLANTED_KEY}")

    output = console.getvalue()
    assert PLANTED_KEY not in output and TOKEN not in output and "llmc_" not in output
    assert output.count("[redacted]") == 8
    assert "'accept': 'json'" in output and "https://api.example/v1" in output and "(b'host', b'example')" in output


def test_a_traceback_is_redacted_too(console):
    try:
        raise RuntimeError(f"request failed, headers={{'x-api-key': '{PLANTED_KEY}'}}")
    except RuntimeError:
        logging.getLogger("gateway").exception("upstream call failed")

    output = console.getvalue()
    assert "RuntimeError: request failed, headers={'x-api-key': '[redacted]'}" in output
    assert PLANTED_KEY not in output


def test_records_without_credentials_are_left_alone(console):
    log = logging.getLogger("connections")

    log.info("Authorization header missing for %s (%d tries)", "openai-prod", 3)
    log.info("%d%% done, key=value", 100)

    assert console.getvalue() == "Authorization header missing for openai-prod (3 tries)\n100% done, key=value\n"


def test_a_connection_named_like_a_header_keeps_its_log_line_readable(console):
    logging.getLogger("gateway").warning("Connection %s: provider answered 401", "openrouter-api-key")

    assert console.getvalue() == "Connection openrouter-api-key: provider answered 401\n"


def test_a_broken_format_string_does_not_print_its_args_raw(console, capsys):
    logging.getLogger("connections").info("Authorization: %s %s", f"Bearer {PLANTED_KEY}")

    assert PLANTED_KEY not in console.getvalue() + capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer sk-abc.def", "Authorization: [redacted]"),
        ("proxy-authorization: Basic dXNlcjpwYXNz", "proxy-authorization: [redacted]"),
        ('{"api-key": "azure", "x-goog-api-key":"AIza"}', '{"api-key": "[redacted]", "x-goog-api-key":"[redacted]"}'),
        ("X-Api-Key=sk-1; next=2", "X-Api-Key=[redacted]; next=2"),
        ("api_key='sk-2'", "api_key='[redacted]'"),
        ("GET /v1beta/models?key=AIzaSecret&alt=sse", "GET /v1beta/models?key=[redacted]&alt=sse"),
        ("then bearer eyJhbGciOi.eyJzdWIi.c2ln= was refused", "then bearer [redacted] was refused"),
        (f"token {TOKEN}.", "token [redacted]."),
        ("Authorization: [redacted]", "Authorization: [redacted]"),
        ("the api key field is required", "the api key field is required"),
    ],
)
def test_redact(text, expected):
    assert redact_log_text(text) == expected


@pytest.mark.django_db
def test_secrets_in_use_are_redacted_in_every_form_until_the_next_request(client):
    from core.redaction import forget_secrets, remember_secrets
    secret = 'k3y"with\\quotes/and+slashes=0123456789'
    key_file = {"type": "service_account", "private_key": "PEM-0123456789-abcdef"}
    key_file_texts = PROVIDERS["vertex_ai"].auth_method("service_account").values_to_redact(
        {"service_account_json": key_file})
    remember_secrets([secret, *key_file_texts, None, 42])
    try:
        text = f"got {secret} / {secret!r} / {secret.encode()!r} / private key PEM-0123456789-abcdef"
        assert redact_log_text(text) == "got [redacted] / '[redacted]' / b'[redacted]' / private key [redacted]"
        client.get("/healthz")  # a new request: the previous call's values are forgotten
        assert redact_log_text(f"got {secret}") == f"got {secret}"
    finally:
        forget_secrets()


def test_at_most_the_latest_secrets_are_kept():
    from core.redaction import MAX_REMEMBERED, forget_secrets, remember_secrets

    values = [f"value-number-{i:04d}" for i in range(MAX_REMEMBERED + 10)]
    remember_secrets(values)
    try:
        assert redact_log_text(values[-1]) == "[redacted]" and redact_log_text(values[0]) == values[0]
    finally:
        forget_secrets()


# --- Provider text ---------------------------------------------------------------------------------------

SECRET = "s3cr3t/value+with=odd&chars-0123456789"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"x:" + SECRET.encode()).decode(),
        base64.b64encode(b"ab:" + SECRET.encode() + b"!").decode(),
        base64.urlsafe_b64encode(b"a" + SECRET.encode()).decode(),
        '\\"' + SECRET.replace("/", "\\/") + '\\"',
    ],
)
def test_every_encoded_form_of_a_secret_is_redacted(form):
    redacted = redact(f"prefix {form} suffix", [SECRET])

    assert "s3cr3t" not in redacted
    assert "[redacted]" in redacted
    assert redacted.startswith("prefix ") and redacted.endswith(" suffix")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefgh12345678",
        "bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        '{"api_key": "whatever-it-is"}',
        "x-api-key=whatever-it-is",
        "token: 1a2b3c4d5e6f",
        "Incorrect API key provided: sk-pro*******************************Ab12.",
        "key gsk_abcdefghijklmnop1234 is revoked",
        "AWS key AKIAIOSFODNN7EXAMPLE denied",
        "signature a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2 mismatch",
    ],
)
def test_anything_shaped_like_a_key_is_redacted_even_when_not_ours(text):
    redacted = redact(text, [])

    assert "[redacted]" in redacted
    for fragment in ("abcdefgh12345678", "whatever-it-is", "1a2b3c4d5e6f", "Ab12", "gsk_abc", "AKIAIOSF", "a1b2c3d4e5"):
        assert fragment not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "'messages' is a required property",
        "This model's maximum context length is 128000 tokens. However, you requested 130000 tokens.",
        "The model `gpt-4o-mini-2024-07-18` does not exist or you do not have access to it.",
        "Invalid value for 'temperature': expected a number.",
    ],
)
def test_ordinary_provider_messages_are_left_alone(text):
    assert redact(text, [PLANTED_KEY]) == text


def test_short_secret_values_do_not_redact_ordinary_words():
    assert redact("the model is fine", ["is"]) == "the model is fine"


def test_a_service_account_key_is_redacted_field_by_field():
    document = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv\\n-----END"}'

    method = PROVIDERS["vertex_ai"].auth_method("service_account")

    redacted = redact("key -----BEGIN PRIVATE KEY-----\nMIIEv\n-----END leaked",
                      method.values_to_redact({"service_account_json": document}))

    assert "MIIEv" not in redacted
