"""The provider catalogue: the one registry that forms, serializers, the admin, the API and the gateway read.

Each provider lists its label, the tasks it serves, where its API lives, its auth methods (secret fields,
stored encrypted, and config fields, stored in plain JSON, with their validators) and the client module
that calls it. Adding a provider is one entry here, one module in `providers/adapters/` and one test file.
"""

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from django.core.exceptions import ValidationError

from . import validators as v

MAX_SECRET_BYTES = 16 * 1024
MAX_CONFIG_CHARS = 2048
ADDRESS_FIELDS = ("base_url", "endpoint_url", "host")

FIELD_LABELS = {
    "api_key": "API key",
    "client_secret": "Client secret",
    "service_account_json": "Service account key (JSON)",
    "aws_access_key_id": "Access key ID",
    "aws_secret_access_key": "Secret access key",
    "aws_session_token": "Session token",
    "token": "Token",
    "endpoint_url": "Endpoint URL",
    "api_version": "API version",
    "tenant_id": "Tenant ID",
    "client_id": "Client ID",
    "project_id": "Project ID",
    "location": "Location",
    "region": "Region",
    "host": "Workspace URL",
    "base_url": "Base URL",
    "organization": "Organization",
}


# --- Tasks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What an endpoint does, and how OpenAI's API spells it."""

    id: str
    label: str
    openai_path: str  # the route under OpenAI's /v1 that serves it
    input_field: str  # the request field a call must carry, non-empty
    input_types: tuple[type, ...]  # what that field may be
    input_help: str  # how a request without it is told what to send
    streams: bool


TASK_LIST: tuple[Task, ...] = (
    Task("chat", "Chat", "chat/completions", "messages", (list,),
         "A chat request needs 'messages': a non-empty list.", streams=True),
    Task("embeddings", "Embeddings", "embeddings", "input", (str, list),
         "An embeddings request needs 'input': a string or a non-empty list.", streams=False),
)
TASKS: Mapping[str, Task] = {task.id: task for task in TASK_LIST}


def task_choices() -> list[tuple[str, str]]:
    return [(task.id, task.label) for task in TASK_LIST]


# --- Fields and methods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretDocument:
    """A secret that is a JSON document (a key file): how it is checked, shown and redacted."""

    parse: Callable[[object], dict]  # the document as a dict, or a ValidationError saying what is wrong
    describe: Callable[[dict], str | None]  # what a mask may show of it (whose key, never the key)
    private_members: tuple[str, ...]  # members redacted one by one wherever the document's text is


@dataclass(frozen=True)
class SecretField:
    name: str
    required: bool = True
    help_text: str = ""
    document: SecretDocument | None = None

    @property
    def label(self) -> str:
        return FIELD_LABELS[self.name]


@dataclass(frozen=True)
class ConfigField:
    name: str
    required: bool = False
    default: str = ""
    help_text: str = ""
    validators: tuple[Callable[[str], None], ...] = ()

    @property
    def label(self) -> str:
        return FIELD_LABELS[self.name]


@dataclass(frozen=True)
class AuthMethod:
    id: str
    label: str
    secret_fields: tuple[SecretField, ...] = ()
    config_fields: tuple[ConfigField, ...] = ()

    def secret_field(self, name: str) -> SecretField | None:
        return next((f for f in self.secret_fields if f.name == name), None)

    def config_field(self, name: str) -> ConfigField | None:
        return next((f for f in self.config_fields if f.name == name), None)

    def values_to_redact(self, secrets: Mapping[str, object]) -> list[str]:
        """Every text of these secrets that must never be shown: each value, and a key file's private members."""
        values: list[str] = []
        for name, value in secrets.items():
            text = json.dumps(value) if isinstance(value, dict) else value
            if not isinstance(text, str) or not text:
                continue
            values.append(text)
            spec = self.secret_field(name)
            if spec is not None and spec.document is not None:
                values += document_members(value, spec.document.private_members)
        return values


def document_members(value: object, names: tuple[str, ...]) -> list[str]:
    """The named string members of a JSON document given as text or as a dict (nothing if it is neither)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, dict):
        return []
    return [value[name] for name in names if isinstance(value.get(name), str) and value[name]]


@dataclass(frozen=True)
class Provider:
    id: str
    label: str
    tasks: tuple[str, ...]
    auth_methods: tuple[AuthMethod, ...]
    # Where the provider's API lives unless a connection's base_url replaces it: a template of config fields.
    default_base_url: str = ""
    # Dotted path of the client class (providers/adapters/) that calls this provider.
    adapter: str = ""
    # May run on this machine (a local server): http:// and loopback addresses are allowed, on save and on call.
    local: bool = False
    # Appended to the base URL (unless already there) where the OpenAI-compatible API is served under a path.
    openai_path: str = ""
    # Builds the default address from config when one template is not enough (Vertex AI's global location).
    address: Callable[[Mapping[str, str]], str] | None = None
    # Auth methods whose streams report their token usage when asked (`stream_options.include_usage`): an
    # OpenAI-family API where it honours the option; a translating client writes the usage chunk itself.
    stream_usage_methods: tuple[str, ...] = ()
    auth_method_ids: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "auth_method_ids", tuple(m.id for m in self.auth_methods))

    def auth_method(self, method_id: str) -> AuthMethod | None:
        return next((m for m in self.auth_methods if m.id == method_id), None)

    def base_url(self, values: Mapping[str, str]) -> str:
        """The API's address for these config values (each filled with its default): the connection's own
        base_url, else the default filled in."""
        if values.get("base_url"):
            return values["base_url"].rstrip("/")
        if self.address is not None:
            return self.address(values).rstrip("/")
        return self.default_base_url.format_map(values).rstrip("/")


# --- Building blocks ----------------------------------------------------------------------------------

API_KEY = SecretField("api_key")
HTTPS_URL = (v.url_validator(),)
LOCAL_OR_HTTPS_URL = (v.url_validator(allow_local=True),)

SERVICE_ACCOUNT_KEY = SecretDocument(
    parse=v.parse_service_account,
    describe=lambda document: f"service account {document['client_email']}"
    if document.get("type") == "service_account" and isinstance(document.get("client_email"), str)
    and document["client_email"]
    else None,
    private_members=("private_key", "private_key_id"),
)


def api_key_method(label: str = "API key", config: tuple[ConfigField, ...] = ()) -> AuthMethod:
    return AuthMethod("api_key", label, (API_KEY,), config)


def base_url_field(default: str, *, required: bool = False, allow_local: bool = False) -> ConfigField:
    return ConfigField(
        "base_url",
        required=required,
        default=default,
        help_text="Replaces the provider's public API address (a proxy, a regional or private deployment)."
        if not required
        else "The server's OpenAI-compatible API address, such as https://llm.example.com/v1.",
        validators=LOCAL_OR_HTTPS_URL if allow_local else HTTPS_URL,
    )


def with_base_url(provider: Provider) -> Provider:
    """Give every auth method without an address field of its own the optional `base_url` override."""
    methods = tuple(
        method
        if any(method.config_field(name) for name in ADDRESS_FIELDS)
        else AuthMethod(
            method.id,
            method.label,
            method.secret_fields,
            method.config_fields + (base_url_field(provider.default_base_url, allow_local=provider.local),),
        )
        for method in provider.auth_methods
    )
    return replace(provider, auth_methods=methods)


AZURE_CONFIG = (
    ConfigField(
        "endpoint_url",
        required=True,
        help_text="Your Azure OpenAI resource, such as https://my-resource.openai.azure.com.",
        validators=HTTPS_URL,
    ),
    ConfigField(
        "api_version",
        required=True,
        help_text="Such as 2024-10-21 or 2024-10-01-preview.",
        validators=(v.validate_azure_api_version,),
    ),
)
DATABRICKS_HOST = ConfigField(
    "host",
    required=True,
    help_text="Such as https://dbc-1234.cloud.databricks.com.",
    validators=HTTPS_URL,
)
VERTEX_REGIONAL_URL = "https://{location}-aiplatform.googleapis.com"


def vertex_address(values: Mapping[str, str]) -> str:
    """Vertex AI's regional address; the `global` location has no region prefix."""
    if values.get("location") == "global":
        return "https://aiplatform.googleapis.com"
    return VERTEX_REGIONAL_URL.format_map(values)


ADAPTERS = "providers.adapters"
OPENAI_ADAPTER = f"{ADAPTERS}.openai.OpenAIAdapter"


def simple_api_key_provider(
    provider_id: str, label: str, tasks: tuple[str, ...], base_url: str, adapter: str = OPENAI_ADAPTER
) -> Provider:
    # A translating client (any but OpenAI's) writes a stream's usage chunk when asked.
    usage = ("api_key",) if adapter != OPENAI_ADAPTER else ()
    return with_base_url(Provider(provider_id, label, tasks, (api_key_method(),), base_url, adapter,
                                  stream_usage_methods=usage))


PROVIDER_LIST: tuple[Provider, ...] = (
    with_base_url(
        Provider(
            "openai",
            "OpenAI",
            ("chat", "embeddings"),
            (
                api_key_method(
                    config=(
                        ConfigField(
                            "organization",
                            help_text="Optional OpenAI organization ID (org-…).",
                            validators=(v.validate_identifier,),
                        ),
                    )
                ),
                AuthMethod("azure", "Azure OpenAI (API key)", (API_KEY,), AZURE_CONFIG),
                AuthMethod(
                    "azure_ad",
                    "Azure OpenAI (Entra ID)",
                    (SecretField("client_secret"),),
                    AZURE_CONFIG
                    + (
                        ConfigField("tenant_id", required=True, validators=(v.validate_guid,)),
                        ConfigField("client_id", required=True, validators=(v.validate_guid,)),
                    ),
                ),
            ),
            "https://api.openai.com/v1",
            OPENAI_ADAPTER,
            stream_usage_methods=("api_key",),
        )
    ),
    simple_api_key_provider(
        "anthropic", "Anthropic", ("chat",), "https://api.anthropic.com", f"{ADAPTERS}.anthropic.AnthropicAdapter"
    ),
    simple_api_key_provider(
        "gemini",
        "Google Gemini",
        ("chat", "embeddings"),
        "https://generativelanguage.googleapis.com",
        f"{ADAPTERS}.gemini.GeminiAdapter",
    ),
    with_base_url(
        Provider(
            "vertex_ai",
            "Google Vertex AI (GCP)",
            ("chat", "embeddings"),
            (
                AuthMethod(
                    "service_account",
                    "Service account key",
                    (
                        SecretField(
                            "service_account_json", help_text="Paste the key file's JSON.", document=SERVICE_ACCOUNT_KEY
                        ),
                    ),
                    (
                        ConfigField("project_id", required=True, validators=(v.validate_gcp_project_id,)),
                        ConfigField("location", default="us-central1", validators=(v.validate_gcp_location,)),
                    ),
                ),
            ),
            VERTEX_REGIONAL_URL,
            f"{ADAPTERS}.vertex_ai.VertexAIAdapter",
            address=vertex_address,
            stream_usage_methods=("service_account",),
        )
    ),
    with_base_url(
        Provider(
            "bedrock",
            "Amazon Bedrock",
            ("chat", "embeddings"),
            (
                AuthMethod(
                    "access_key",
                    "Access keys",
                    (
                        SecretField("aws_access_key_id"),
                        SecretField("aws_secret_access_key"),
                        SecretField("aws_session_token", required=False, help_text="Only for temporary credentials."),
                    ),
                    (ConfigField("region", required=True, validators=(v.validate_aws_region,)),),
                ),
                api_key_method(
                    "Bedrock API key",
                    (ConfigField("region", required=True, validators=(v.validate_aws_region,)),),
                ),
            ),
            "https://bedrock-runtime.{region}.amazonaws.com",
            f"{ADAPTERS}.bedrock.BedrockAdapter",
            stream_usage_methods=("access_key", "api_key"),
        )
    ),
    simple_api_key_provider("mistral", "Mistral", ("chat", "embeddings"), "https://api.mistral.ai/v1"),
    simple_api_key_provider(
        "cohere", "Cohere", ("chat", "embeddings"), "https://api.cohere.com", f"{ADAPTERS}.cohere.CohereAdapter"
    ),
    Provider(
        "databricks",
        "Databricks",
        ("chat", "embeddings"),
        (
            AuthMethod("token", "Personal access token", (SecretField("token"),), (DATABRICKS_HOST,)),
            AuthMethod(
                "oauth_m2m",
                "OAuth (service principal)",
                (SecretField("client_secret"),),
                (DATABRICKS_HOST, ConfigField("client_id", required=True, validators=(v.validate_identifier,))),
            ),
        ),
        adapter=f"{ADAPTERS}.databricks.DatabricksAdapter",
    ),
    simple_api_key_provider("xai", "xAI", ("chat",), "https://api.x.ai/v1"),
    simple_api_key_provider("groq", "Groq", ("chat",), "https://api.groq.com/openai/v1"),
    simple_api_key_provider("deepseek", "DeepSeek", ("chat",), "https://api.deepseek.com"),
    simple_api_key_provider("openrouter", "OpenRouter", ("chat",), "https://openrouter.ai/api/v1"),
    simple_api_key_provider("together_ai", "Together AI", ("chat", "embeddings"), "https://api.together.xyz/v1"),
    Provider(
        "ollama",
        "Ollama",
        ("chat", "embeddings"),
        (
            AuthMethod("none", "No authentication", (), (base_url_field("http://localhost:11434", allow_local=True),)),
            api_key_method(config=(base_url_field("http://localhost:11434", allow_local=True),)),
        ),
        "http://localhost:11434",
        OPENAI_ADAPTER,
        local=True,
        openai_path="/v1",  # Ollama serves its OpenAI-compatible API under /v1
    ),
    Provider(
        "openai_compatible",
        "OpenAI-compatible (vLLM, LM Studio, any proxy)",
        ("chat", "embeddings"),
        (
            api_key_method(config=(base_url_field("", required=True, allow_local=True),)),
            AuthMethod("none", "No authentication", (), (base_url_field("", required=True, allow_local=True),)),
        ),
        adapter=OPENAI_ADAPTER,
        local=True,
    ),
)

PROVIDERS: Mapping[str, Provider] = {provider.id: provider for provider in PROVIDER_LIST}


def provider_choices() -> list[tuple[str, str]]:
    return [(provider.id, provider.label) for provider in PROVIDER_LIST]


def auth_method_choices() -> list[tuple[str, str]]:
    """Every (id, label) pair across providers, for display; which ones a provider accepts is checked in clean."""
    seen: dict[str, str] = {}
    for provider in PROVIDER_LIST:
        for method in provider.auth_methods:
            seen.setdefault(method.id, method.label)
    return list(seen.items())


def auth_method_label(provider_id: str, method_id: str) -> str:
    provider = PROVIDERS.get(provider_id)
    method = provider.auth_method(method_id) if provider else None
    return method.label if method else method_id


def provider_label(provider_id: str) -> str:
    provider = PROVIDERS.get(provider_id)
    return provider.label if provider else provider_id


# --- Validation -----------------------------------------------------------------------------------------


def resolve(provider_id: str, method_id: str) -> tuple[Provider, AuthMethod]:
    """The provider and auth method, or a ValidationError naming whichever is unknown."""
    provider = PROVIDERS.get(provider_id)
    if provider is None:
        raise ValidationError(
            {"provider": f"Unknown provider '{provider_id}'. Choose one of: {', '.join(PROVIDERS)}."}
        )
    method = provider.auth_method(method_id)
    if method is None:
        raise ValidationError(
            {
                "auth_method": f"{provider.label} has no authentication method '{method_id}'. "
                f"Choose one of: {', '.join(provider.auth_method_ids)}."
            }
        )
    return provider, method


def never_a_placeholder(value: str) -> bool:
    return False


def clean_secrets(
    method: AuthMethod, secrets: object, *, is_placeholder: Callable[[str], bool] = never_a_placeholder
) -> dict[str, str]:
    """Trimmed, complete secrets for `method`; errors are keyed `secrets.<field>`.

    `is_placeholder` tells what the surfaces display in place of a stored secret (a mask), which must never
    be taken for a new value.
    """
    if not isinstance(secrets, dict):
        raise ValidationError({"secrets": "Give the secrets as an object of field names and values."})
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    for name in secrets:
        if method.secret_field(name) is None:
            expected = ", ".join(f.name for f in method.secret_fields) or "none"
            errors[f"secrets.{name}"] = f"Unknown secret field '{name}' for {method.label}; expected: {expected}."
    for spec in method.secret_fields:
        try:
            value = clean_secret_value(spec, secrets.get(spec.name), is_placeholder=is_placeholder)
        except ValidationError as error:
            errors[f"secrets.{spec.name}"] = error.messages[0]
            continue
        if value:
            cleaned[spec.name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_secret_value(
    spec: SecretField, value: object, *, is_placeholder: Callable[[str], bool] = never_a_placeholder
) -> str:
    if spec.document is not None and isinstance(value, dict):
        value = json.dumps(value)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError(f"{spec.label} must be a string.")
    value = value.strip()
    if not value:
        if spec.required:
            raise ValidationError(f"{spec.label} is required.")
        return ""
    if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
        raise ValidationError(f"{spec.label} is longer than 16 KiB.")
    if is_placeholder(value):
        raise ValidationError(
            f"{spec.label} looks like the masked value shown for a stored secret: enter the full new value, "
            "or leave it empty to keep the stored one."
        )
    if spec.document is not None:
        document = spec.document.parse(value)  # a key file: parsed, its PEM's newlines are its own
        return json.dumps(document, separators=(",", ":"))
    refuse_what_a_header_cannot_carry(spec, value)
    return value


# What a header value may hold, as every secret but a key file ends up in one (or is signed as if it were).
HEADER_SAFE = re.compile(r"[\x20-\x7e]*")


def refuse_what_a_header_cannot_carry(spec: SecretField, value: str) -> None:
    """Printable ASCII only. Says which kind of character is wrong and where, never the value (nor the character,
    which is part of it)."""
    if HEADER_SAFE.fullmatch(value):
        return
    position, character = next((i, c) for i, c in enumerate(value, start=1) if not HEADER_SAFE.fullmatch(c))
    raise ValidationError(
        f"{spec.label} contains {describe_character(character)} (character {position}): credentials are sent "
        "in HTTP headers, which take printable ASCII characters only. Paste it again without it.",
        code="not_header_safe",
    )


def describe_character(character: str) -> str:
    if character in "\r\n\x85\u2028\u2029":
        return "a line break"
    if character == "\t":
        return "a tab"
    if character == "\x00":
        return "a NUL character"
    if unicodedata.category(character) == "Cc":
        return "a control character"
    if character in "\u00a0\u2007\u202f":
        return "a no-break space"
    if character.isspace():
        return "a non-ASCII space"
    if unicodedata.category(character) == "Cf":
        return "an invisible character"
    return "a non-ASCII character"


def clean_config(method: AuthMethod, config: object) -> dict[str, str]:
    """Trimmed, validated config for `method` (empty optional fields dropped); errors keyed `config.<field>`."""
    if not isinstance(config, dict):
        raise ValidationError({"config": "Give the configuration as an object of field names and values."})
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    for name in config:
        if method.config_field(name) is None:
            expected = ", ".join(f.name for f in method.config_fields) or "none"
            errors[f"config.{name}"] = f"Unknown field '{name}' for {method.label}; expected: {expected}."
    for spec in method.config_fields:
        value = config.get(spec.name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[f"config.{spec.name}"] = f"{spec.label} must be a string."
            continue
        value = value.strip()
        if not value:
            if spec.required:
                errors[f"config.{spec.name}"] = f"{spec.label} is required."
            continue
        if len(value) > MAX_CONFIG_CHARS:
            errors[f"config.{spec.name}"] = f"{spec.label} is longer than {MAX_CONFIG_CHARS} characters."
            continue
        try:
            for validate in spec.validators:
                validate(value)
        except ValidationError as error:
            errors[f"config.{spec.name}"] = error.messages[0]
            continue
        cleaned[spec.name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned
