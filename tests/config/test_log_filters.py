"""No credential reaches a log: every handler redacts auth headers, bearer tokens and our `llmc_` tokens."""

import logging
from io import StringIO

import pytest
from django.conf import settings

from config.log_filters import RedactSecrets, redact
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
    assert settings.LOGGING["filters"]["redact_secrets"] == {"()": "config.log_filters.RedactSecrets"}
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
    assert redact(text) == expected


@pytest.mark.django_db
def test_secrets_in_use_are_redacted_in_every_form_until_the_next_request(client):
    from config.log_filters import forget_secrets, remember_secrets

    secret = 'k3y"with\\quotes/and+slashes=0123456789'
    remember_secrets([secret, {"type": "service_account", "private_key": "PEM-0123456789-abcdef"}, None, 42])
    try:
        text = f"got {secret} / {secret!r} / {secret.encode()!r} / private key PEM-0123456789-abcdef"
        assert redact(text) == "got [redacted] / '[redacted]' / b'[redacted]' / private key [redacted]"
        client.get("/healthz")  # a new request: the previous call's values are forgotten
        assert redact(f"got {secret}") == f"got {secret}"
    finally:
        forget_secrets()


def test_at_most_the_latest_secrets_are_kept():
    from config.log_filters import MAX_REMEMBERED, forget_secrets, remember_secrets

    values = [f"value-number-{i:04d}" for i in range(MAX_REMEMBERED + 10)]
    remember_secrets(values)
    try:
        assert redact(values[-1]) == "[redacted]" and redact(values[0]) == values[0]
    finally:
        forget_secrets()
