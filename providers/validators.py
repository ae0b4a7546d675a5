"""Value rules of the catalogue's fields, the same on every surface: URLs (with the private-address guard)
and provider-specific shapes (Azure API versions, GCP project ids, AWS regions, service account keys)."""

import json
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from .addresses import is_allowed_private_host, is_loopback_host, is_private_host_name, is_public_ip, parse_ip


def url_validator(*, allow_local: bool = False):
    """A validator for URLs the product will call.

    `https://` only; `http://` and loopback hosts only when `allow_local` (Ollama, OpenAI-compatible
    servers) or for a host in ALLOWED_PRIVATE_HOSTS. Private, link-local and metadata addresses are
    refused unless listed there. Resolution is not needed to save; the gateway checks resolved
    addresses again at call time.
    """

    def validate_url(value: str) -> None:
        try:
            parts = urlsplit(value)
            hostname = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValidationError("Enter a valid URL, such as https://example.com.", code="invalid") from None
        if parts.scheme not in ("http", "https") or not hostname or any(c.isspace() for c in value):
            raise ValidationError("Enter a valid URL, such as https://example.com.", code="invalid")
        if parts.username is not None or parts.password is not None:
            raise ValidationError("Remove the credentials from the URL: they belong in the secret fields.",
                                  code="credentials_in_url")
        if parts.query or parts.fragment:
            raise ValidationError("Remove the query string and fragment from the URL.", code="query_in_url")
        host = hostname.lower().rstrip(".")
        operator_allowed = is_allowed_private_host(host)
        local_allowed = allow_local and is_loopback_host(host)
        if parts.scheme == "http" and not (operator_allowed or local_allowed):
            raise ValidationError(
                "Use https://. Plain http:// is accepted only for a local Ollama or OpenAI-compatible server "
                "or a host listed in ALLOWED_PRIVATE_HOSTS.",
                code="insecure_scheme",
            )
        if operator_allowed or local_allowed:
            return
        address = parse_ip(host)
        if (address is not None and not is_public_ip(address)) or (address is None and is_private_host_name(host)):
            raise ValidationError(
                f"'{host}' is a private, loopback, link-local or metadata address. "
                "Add it to ALLOWED_PRIVATE_HOSTS if this server should reach it.",
                code="private_address",
            )

    return validate_url


# --- Provider-specific shapes -------------------------------------------------------------------------


def regex_validator(pattern: str, message: str):
    compiled = re.compile(pattern)

    def validate(value: str) -> None:
        if not compiled.fullmatch(value):
            raise ValidationError(message, code="invalid")

    return validate


validate_azure_api_version = regex_validator(
    r"\d{4}-\d{2}-\d{2}(-preview)?", "Use an Azure API version such as 2024-10-21 or 2024-10-01-preview."
)
validate_guid = regex_validator(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "Use a GUID such as 00000000-0000-0000-0000-000000000000.",
)
validate_gcp_project_id = regex_validator(
    r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
    "Use a GCP project ID: 6–30 lowercase letters, digits or hyphens, starting with a letter, "
    "not ending with a hyphen.",
)
validate_gcp_location = regex_validator(
    r"[a-z]+(-[a-z0-9]+)*", "Use a Google Cloud location such as us-central1 or europe-west4 (or global)."
)
validate_aws_region = regex_validator(
    r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d", "Use an AWS region such as us-east-1 or eu-central-1."
)
validate_identifier = regex_validator(r"\S{1,256}", "Enter a value without spaces.")


def parse_service_account(value) -> dict:
    """A service account key as a dict: given as an object or as a string holding one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValidationError(
                "Paste the service account key file's JSON (it starts with '{').", code="invalid_json"
            ) from None
    if not isinstance(value, dict):
        raise ValidationError("A service account key is a JSON object.", code="invalid_json")
    if value.get("type") != "service_account":
        raise ValidationError('This is not a service account key: "type" must be "service_account".',
                              code="not_service_account")
    missing = [key for key in ("client_email", "private_key") if not isinstance(value.get(key), str) or not value[key]]
    if missing:
        raise ValidationError(f"The service account key lacks {', '.join(missing)}.", code="incomplete")
    if "token_uri" in value:
        if not isinstance(value["token_uri"], str):
            raise ValidationError("The service account's token_uri must be a URL.", code="invalid")
        try:
            url_validator()(value["token_uri"])
        except ValidationError as error:
            raise ValidationError(f"The service account's token_uri is refused: {error.messages[0]}",
                                  code="invalid_token_uri") from None
    return value
