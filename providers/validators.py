"""Value rules of the catalogue's fields, the same on every surface: URLs (with the private-address guard)
and provider-specific shapes (Azure API versions, GCP project ids, AWS regions, service account keys)."""

import ipaddress
import json
import re
from urllib.parse import SplitResult, urlsplit

import yarl
from django.core.exceptions import ValidationError

from .addresses import is_allowed_private_host, is_loopback_host, is_private_host, normalise_host, parse_ip

INVALID_URL = "Enter a valid URL, such as https://example.com."
# A host name as sent on the wire (IDNA's ASCII form): labels of letters, digits, hyphens (and the underscores
# some real names carry), 1-63 characters each, 253 in all.
HOST_LABEL = re.compile(r"[a-z0-9_-]{1,63}", re.ASCII)
PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def url_validator(*, allow_local: bool = False):
    """A validator for URLs the product will call.

    `https://` only; `http://` and loopback hosts only when `allow_local` (Ollama, OpenAI-compatible
    servers) or for a host in ALLOWED_PRIVATE_HOSTS. Private, link-local and metadata addresses are
    refused unless listed there, judged as the HTTP clients read the host (providers/addresses.py). What is
    saved can be called: the URL parser the provider client uses (aiohttp's yarl) must accept
    it and agree on its host, an IP address is written as a plain address, and a name has only the
    characters a host name can. Resolution is not needed to save; the gateway checks resolved addresses
    again at call time.
    """

    def allowed_private(host: str) -> bool:
        return is_allowed_private_host(host) or (allow_local and is_loopback_host(host))

    def validate_url(value: str) -> None:
        parts, host = split_url(value)
        if parts.scheme == "http" and not allowed_private(host):
            raise ValidationError(
                "Use https://. Plain http:// is accepted only for a local Ollama or OpenAI-compatible server "
                "or a host listed in ALLOWED_PRIVATE_HOSTS.",
                code="insecure_scheme",
            )
        refuse_private(host, allowed_private)
        refuse_unusual_address(host)
        wire_host = host_the_clients_call(value, host)
        if normalise_host(wire_host) != normalise_host(host):
            refuse_private(wire_host, allowed_private)

    return validate_url


def split_url(value: str) -> tuple[SplitResult, str]:
    """The URL's parts and its host (lowercase, without brackets or the root's trailing dot), or why not."""
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValidationError(f"{INVALID_URL[:-1]}: this one contains a space or an invisible character.",
                              code="invalid")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname or ""
    except ValueError:
        raise ValidationError(INVALID_URL, code="invalid") from None
    if parts.scheme not in ("http", "https") or not hostname.rstrip("."):
        raise ValidationError(INVALID_URL, code="invalid")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("Remove the credentials from the URL: they belong in the secret fields.",
                              code="credentials_in_url")
    if parts.query or parts.fragment:
        raise ValidationError("Remove the query string and fragment from the URL.", code="query_in_url")
    port = written_port(parts.netloc)
    if port is not None and not (PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise ValidationError(f"{INVALID_URL[:-1]}: the port must be a number from 1 to 65535.", code="invalid")
    return parts, hostname.rstrip(".")


def written_port(netloc: str) -> str | None:
    """The port as written after the host (None without one; empty after a bare colon, which means none)."""
    host_and_port = netloc.rpartition("@")[2]
    if host_and_port.startswith("["):
        host_and_port = host_and_port.partition("]")[2]
    _, colon, port = host_and_port.partition(":")
    return port if colon and port else None


def refuse_private(host: str, allowed_private) -> None:
    if allowed_private(host) or not is_private_host(host):
        return
    address = parse_ip(host)
    meaning = f" is {address}," if address is not None and str(address) != host else ""
    raise ValidationError(
        f"'{host}'{meaning or ' is'} a private, loopback, link-local or metadata address. "
        "Add it to ALLOWED_PRIVATE_HOSTS if this server should reach it.",
        code="private_address",
    )


def refuse_unusual_address(host: str) -> None:
    """A host must be written as clients read it. An IP address as a plain one: clients read legacy IPv4 forms
    (`0177.0.0.1`, `0x7f.1`, `2130706433`) and IDNA-mapped digits (`①②⑦…`) differently, or refuse them; IPv6
    zones name an interface of this machine, not a provider. A name without the full-width letters or full
    stops IDNA maps to others."""
    address = parse_ip(host)
    if address is None:
        if normalise_host(host) != host:
            raise ValidationError(f"Write the host as '{normalise_host(host)}': HTTP clients read '{host}' as that.",
                                  code="unusual_address")
        return
    try:
        written = ipaddress.ip_address(host)
    except ValueError:
        written = None
    if written != address:
        raise ValidationError(
            f"Write the IP address as {address}, four decimal numbers without leading zeros: "
            f"HTTP clients read '{host}' differently, or not at all.",
            code="unusual_address",
        )
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ValidationError("Remove the zone (the part from %) from the IPv6 address.", code="invalid")


NUMERIC_NAME = re.compile(r"[0-9.]+")


def host_the_clients_call(value: str, host: str) -> str:
    """The host the provider client would call (its ASCII form, as aiohttp's URL parser, yarl, reads it), or a
    ValidationError when the parser refuses the URL or a name has characters no host name has."""
    refusal = ValidationError(
        f"'{host}' is not a host name HTTP clients accept: use letters, digits, hyphens and dots "
        "(or an IP address such as 203.0.113.7).",
        code="invalid_host",
    )
    try:
        url = yarl.URL(value)
        url.host  # noqa: B018 - decoding an IDNA name raises when its A-label is malformed
        client_host = (url.raw_host or "").lower()
    except (ValueError, UnicodeError, TypeError):
        raise refusal from None
    if parse_ip(client_host) is not None:
        return client_host
    name = client_host[:-1] if client_host.endswith(".") else client_host
    bracketed = value.partition("://")[2].rpartition("@")[2].startswith("[")
    if (
        bracketed  # only an IPv6 address is written in brackets
        or NUMERIC_NAME.fullmatch(name)  # looks like an IPv4 address, and is not one
        or not name
        or len(name) > 253
        or not all(HOST_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise refusal
    return client_host


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
