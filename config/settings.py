"""Settings, read from the environment (and `.env`, which the real environment overrides).

Every value a deployment may change is listed in README.md (Configuration). Bad or missing keys stop
start-up with a message that says what to do: nothing ever falls back to a built-in key.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE points elsewhere (tests point it nowhere); variables already set always win.
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))

HOW_TO_FIX_KEYS = (
    "Run `make run` once to create .env with fresh keys, or set it yourself; a new Fernet key is printed by "
    "python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def read_secret_key() -> str:
    value = env.str("SECRET_KEY", default="")
    if len(value) < 32:
        raise ImproperlyConfigured(f"SECRET_KEY is missing or shorter than 32 characters. {HOW_TO_FIX_KEYS}")
    return value


def read_field_encryption_keys() -> list[str]:
    """The Fernet key list: the first encrypts, all decrypt (a list, never one comma-joined string)."""
    keys = env.list("FIELD_ENCRYPTION_KEY", default=[])
    keys = [key.strip() for key in keys if key.strip()]
    if not keys:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY is missing. {HOW_TO_FIX_KEYS}")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY: key number {position} of {len(keys)} is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes). Keys are separated by commas, newest first. {HOW_TO_FIX_KEYS}"
            ) from None
    return keys


SECRET_KEY = read_secret_key()
FIELD_ENCRYPTION_KEY = read_field_encryption_keys()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
# Hosts (names or IP addresses) that connections may point at although they are private or loopback.
ALLOWED_PRIVATE_HOSTS = [host.lower() for host in env.list("ALLOWED_PRIVATE_HOSTS", default=[])]
GATEWAY_TIMEOUT = env.float("GATEWAY_TIMEOUT", default=60.0)
# Seconds to open a connection to a provider (the read timeout above is for its answer, between chunks).
GATEWAY_CONNECT_TIMEOUT = env.float("GATEWAY_CONNECT_TIMEOUT", default=10.0)
# Calls in flight per server process; past it a call is answered 503 with Retry-After at once, not queued.
GATEWAY_MAX_IN_FLIGHT = env.int("GATEWAY_MAX_IN_FLIGHT", default=2048)
# Provider connections per server process (open at once, across providers).
GATEWAY_UPSTREAM_CONNECTIONS = env.int("GATEWAY_UPSTREAM_CONNECTIONS", default=GATEWAY_MAX_IN_FLIGHT + 64)
# The largest provider answer read (non-streamed): beyond it, 502 upstream_response_too_large and nothing kept.
GATEWAY_MAX_RESPONSE_BYTES = env.int("GATEWAY_MAX_RESPONSE_BYTES", default=64 * 1024 * 1024)
# Threads per server process for pages, admin and API requests (each request has one to itself while it runs).
PAGE_THREADS = env.int("PAGE_THREADS", default=8)
# Threads per server process for the gateway's database reads (each with its own connection while it works).
GATEWAY_DATABASE_THREADS = env.int("GATEWAY_DATABASE_THREADS", default=4)
# Seconds a destination that just failed (5xx, timeout, unreachable; 429 without Retry-After) is tried last.
GATEWAY_COOLDOWN_SECONDS = env.float("GATEWAY_COOLDOWN_SECONDS", default=30.0)
# Each process writes the tokens its calls spent from budgets (gateway/limits.py) this long after the first of
# them waits: other processes see a crossed budget at most this late. Tests write them themselves.
LIMITS_FLUSH_SECONDS = env.float("LIMITS_FLUSH_SECONDS", default=0.1)
LIMITS_WRITER_THREAD = True
# How old a connection's key may get before it is overdue for rotation (a connection may set its own).
def read_key_max_age_days() -> int:
    value = env.str("KEY_MAX_AGE_DAYS", default="90").strip()
    if not value.isdigit() or not 1 <= int(value) <= 3650:
        raise ImproperlyConfigured(f"KEY_MAX_AGE_DAYS must be a whole number of days from 1 to 3650, not {value!r}.")
    return int(value)


KEY_MAX_AGE_DAYS = read_key_max_age_days()
# One line per request (method, path, status, size, time; never headers or query strings).
ACCESS_LOG = env.bool("ACCESS_LOG", default=True)
# Microsoft Entra ID's sign-in address for Azure OpenAI with Entra ID (another for sovereign clouds, a fake in tests).
AZURE_AUTHORITY_HOST = env.str("AZURE_AUTHORITY_HOST", default="https://login.microsoftonline.com").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    # Ours, from the bottom up: shared plumbing and the provider client, the audit log, then the apps.
    "core",
    "providers",
    "teams",
    "audit",
    "connections",
    "endpoints",
    "tokens",
    "usage",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Above whitenoise, which answers static files itself: every response carries the CSP and X-Frame-Options.
    "csp.middleware.CSPMiddleware",
    # Below the headers, above anything that reads a body: too large is the surface's 413 (core/body_limits.py).
    "core.body_limits.BodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The database unreachable while a view runs: the surface's 503 instead of a 500 (core/unavailable.py).
    "core.unavailable.DatabaseUnavailableMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as axes asks: turns a throttled login into its 429 response (config/login_throttle.py).
    "config.login_throttle.LoginThrottleMiddleware",
]
# axes looks for its middleware by name; ours above is a subclass of it (the sync form).
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def sqlite_options() -> dict:
    """WAL and a busy timeout let several server processes share one SQLite file."""
    return {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }


DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Connections per server process in PostgreSQL's pool: requests borrow one and give it back when they end.
DATABASE_POOL_SIZE = env.int("DATABASE_POOL_SIZE", default=10)
# PostgreSQL: the statements run on every request (sessions, tokens, the lists' pages) are prepared once on each
# pooled connection and then only executed, which saves the server parsing and planning them again. Off behind a
# pooler that cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**sqlite_options(), **DATABASES["default"].get("OPTIONS", {})}
    # Keep a thread's connection across requests: opening one (and its pragmas) costs more than a query.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    options = DATABASES["default"].setdefault("OPTIONS", {})
    # An unreachable server answers 503 within seconds instead of holding a request until the OS gives up.
    options.setdefault("connect_timeout", 5)
    # Django's psycopg pool: the connections of a process do not grow with its requests or streams (a pooled
    # connection is given back at the end of each request, so CONN_MAX_AGE stays 0).
    # A request waits at most `timeout` seconds for a free connection (or for the database to come back).
    options.setdefault("pool", {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 3})
    # Django's backend, whose pool checks a connection before lending it only when it was not lent in the last
    # second (core/postgresql/base.py), where Django's checks every one: a round trip a request.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "core.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    if DATABASE_PREPARED_STATEMENTS:
        # psycopg prepares nothing on a connection without a threshold (Django's default). Django's own cursors bind
        # on the client and never prepare whatever it is; core.rows prepares its statements on a cursor of its own.
        options.setdefault("prepare_threshold", 5)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# How long the event loop waits on a call's token and endpoint read before awaiting it instead
# (core/db_threads.py); 0: never. Worth it where the read is in-process work (SQLite), not a round trip to a
# server the loop could spend on other calls (PostgreSQL).
GATEWAY_DATABASE_HOLD_SECONDS = env.float(
    "GATEWAY_DATABASE_HOLD_SECONDS", default=0.002 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 0.0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# axes first: it refuses a throttled login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- REST API (/api/v1/) ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: its authenticate_header makes unauthenticated requests 401 with `WWW-Authenticate: Bearer`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tokens.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The browsable API only while developing (DEBUG): in production the API speaks JSON only.
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["core.api.LimitedJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.renderers.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "core.api.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Connections API",
    "DESCRIPTION": "Connections (provider credentials) and the gateway endpoints that use them. "
    "Secrets are write-only: responses carry masks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.document_name_pattern",
        "core.api.document_error_responses",
        "gateway.schema.add_gateway_paths",
    ],
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/settings/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files (served by whitenoise, or by nginx in front: deploy/nginx.conf).
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# HTTPS deployments: redirect, Secure cookies, HSTS. BEHIND_PROXY trusts the proxy's scheme header.
HTTPS = env.bool("HTTPS", default=False)
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
# A load balancer checks each instance over plain HTTP on its private address: /healthz answers there too.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SESSION_COOKIE_HTTPONLY = True
# Django's database store, reading a session by a statement compiled once (every signed-in page reads one).
SESSION_ENGINE = "core.sessions"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy on every response (HTTPS or not): scripts and styles only from our own files, no
# inline script or style. (/api/v1/docs/ adds `data:` images for the icons inside Swagger UI's stylesheet.)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# Login throttling: after 10 failures for a username from one address within 15 minutes, further
# tries get 429 for 15 minutes (counted from the last failure). Kept in the database, shared by all workers.
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A refused try during the lockout is not counted again, so the lockout ends 15 minutes after the 10th failure.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "config.login_throttle.lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_VERBOSE = False  # no start-up banner on stderr of every management command
# The client address: the socket's peer; behind a proxy, the address that proxy appended to X-Forwarded-For
# (the right-most entry: anything left of it was sent by the client and can be forged). Taken exactly, not
# guessed: ipware would prefer a public address the client wrote over a private one the proxy added.
AXES_CLIENT_IP_CALLABLE = "config.login_throttle.client_address"

# Every handler gets the redaction filter: no credential (auth header, bearer or `llmc_` token) reaches a log.
# A request Django refuses (403, 400 for a suspicious or bad request) is one line, without its traceback.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "refused_requests_on_one_line": {"()": "core.request_logs.RefusedRequestsOnOneLine"},
        "redact_secrets": {"()": "core.redaction.RedactSecrets"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["refused_requests_on_one_line", "redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # aiohttp's client logs nothing useful below warnings. Django's own default handlers (a DEBUG console,
    # mail_admins with the request's headers) would print a record before it reaches ours unfiltered: its
    # loggers hand everything to the root handler instead.
    "loggers": {
        "aiohttp": {"level": "WARNING"},
        "access": {"level": "INFO"},
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # botocore logs SigV4 canonical requests (with the session token) at DEBUG.
        "botocore": {"level": "WARNING"},
    },
}

# What /healthz checks (core/health.py): each answers (name, "ok" or what is wrong).
HEALTH_CHECKS = ["core.health.database_answers", "connections.health.keys_read_the_stored_secrets"]

# The rows audit entries can name (audit/models.py), so that pages show a renamed subject's current name.
AUDIT_SUBJECTS = {"connection": "connections.Connection", "endpoint": "endpoints.Endpoint"}

# --- Usage (usage/): every gateway call recorded off its path, hourly totals kept longer --------------------
# Each process buffers calls and writes them from a thread: every USAGE_FLUSH_SECONDS, or once
# USAGE_FLUSH_CALLS wait; past USAGE_BUFFER_CALLS waiting (the database down) the newest are dropped and counted.
USAGE_FLUSH_SECONDS = env.float("USAGE_FLUSH_SECONDS", default=1.0)
USAGE_FLUSH_CALLS = env.int("USAGE_FLUSH_CALLS", default=500)
USAGE_BUFFER_CALLS = env.int("USAGE_BUFFER_CALLS", default=100_000)
USAGE_WRITER_THREAD = True
# Days one row per call is kept, and days the hourly totals (the Usage tab, the API's hours and days) are kept.
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=7)
USAGE_HOURLY_RETENTION_DAYS = env.int("USAGE_HOURLY_RETENTION_DAYS", default=400)
# /metrics: readable with a bearer token whose user holds usage.view_metrics, or from these addresses
# (exact IPs or networks, e.g. 10.0.0.0/8), as the socket's peer or, BEHIND_PROXY, the proxy's X-Forwarded-For.
METRICS_ALLOWED_ADDRESSES = env.list("METRICS_ALLOWED_ADDRESSES", default=[])
# The rows usage records name by id (usage/models.py), so that its pages and API show their current names.
USAGE_SUBJECTS = {
    "endpoint": "endpoints.Endpoint", "connection": "connections.Connection", "token": "tokens.ApiToken",
}
