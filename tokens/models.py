"""API tokens: random `llmc_` strings shown once; only their SHA-256 is stored."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db import connection as database
from django.db import models
from django.db.models import Exists, ExpressionWrapper, OuterRef, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from core.last_used import LAST_USED_RESOLUTION, touch_last_used
from core.limits import CallLimits
from core.rows import CompiledQuery, RowReader

TOKEN_PREFIX = "llmc_"
# Characters of the token kept in clear to tell tokens apart: `llmc_` and 6 of its ~43 random characters.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
MAX_TOKEN_LENGTH = 200
# How long a token may be made to last, in days: the one rule for the Tokens page and create_api_token.
EXPIRES_DAYS_MIN, EXPIRES_DAYS_MAX = 1, 3650


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 (a fast hash is right for 256 random bits; no password hasher)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def could_be_a_token(plaintext: str) -> bool:
    return plaintext.startswith(TOKEN_PREFIX) and len(plaintext) <= MAX_TOKEN_LENGTH


class ApiTokenQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> "ApiTokenQuerySet":
        """The one rule for a token that works: not revoked, not expired, and its user active."""
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class Scope(models.TextChoices):
    """What a token may be used for (its user's permissions still decide what it may do there)."""

    FULL = "full", "API and gateway"
    READ_ONLY = "read_only", "Read-only API"
    GATEWAY = "gateway", "Gateway only"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """A token's user as the gateway needs it: who, whether they hold the permission asked about, and what the
    token is limited to."""

    token_id: int
    user_id: int
    may_call: bool
    scope: str = Scope.FULL
    endpoint_limited: bool = False  # only the token's listed endpoints may be called
    requests_per_minute: int | None = None
    token_budget: int | None = None
    budget_period: str = "month"
    all_teams: bool = False  # a superuser's: endpoints of every team; else only those of the user's teams

    @property
    def may_use_gateway(self) -> bool:
        return self.scope != Scope.READ_ONLY


class ApiToken(CallLimits):
    """A bearer credential for the API and gateway, acting as its owner; revocable and optionally expiring."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it (not secret).")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.FULL)
    # Named by app label, not imported: tokens and endpoints sit side by side, and only the gateway reads both.
    endpoints = models.ManyToManyField(
        "endpoints.Endpoint", blank=True, related_name="+",
        help_text="The only endpoints this token may call through the gateway; none listed: any endpoint.",
    )

    objects = ApiTokenQuerySet.as_manager()

    audit_subject_type = "token"

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}…"

    def __repr__(self) -> str:
        return f"<ApiToken {self.prefix}… of user {self.user_id}>"

    @property
    def name(self) -> str:
        """What the audit log names a token by: its display prefix (never the token)."""
        return self.prefix

    @classmethod
    def issue(cls, *, user, expires_days: int | None = None, scope: str = Scope.FULL, endpoints=(),
              **limits) -> tuple["ApiToken", str]:
        """Create a token for `user`; returns the row and the plaintext, which is never stored."""
        if expires_days is not None and not EXPIRES_DAYS_MIN <= expires_days <= EXPIRES_DAYS_MAX:
            raise ValueError(f"expires_days must be from {EXPIRES_DAYS_MIN} to {EXPIRES_DAYS_MAX}")
        if scope not in Scope.values:
            raise ValueError(f"scope must be one of {', '.join(Scope.values)}")
        plaintext = generate_token()
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        token = cls(
            user=user, prefix=plaintext[:DISPLAY_PREFIX_LENGTH], key_hash=hash_token(plaintext), expires_at=expires_at,
            scope=scope, **limits,
        )
        token.full_clean(exclude=["user", "key_hash", "prefix"])
        token.save()
        if endpoints:
            token.endpoints.set(endpoints)
        return token, plaintext

    def allows(self, method: str) -> bool:
        """Whether the API may serve `method` to this token (the gateway asks `Caller.may_use_gateway`)."""
        if self.scope == Scope.GATEWAY:
            return False
        return self.scope == Scope.FULL or method in SAFE_METHODS

    @classmethod
    def may_call_endpoint(cls, token_id: int, endpoint_id: int) -> bool:
        """Whether a token limited to some endpoints lists this one."""
        return cls.endpoints.through.objects.filter(apitoken_id=token_id, endpoint_id=endpoint_id).exists()

    @classmethod
    def find(cls, plaintext: str) -> "ApiToken | None":
        """The usable token with this plaintext (looked up by hash, so lookup time says nothing of the token)."""
        if not could_be_a_token(plaintext):
            return None
        wanted = hash_token(plaintext)
        # Every API request's first read: one statement compiled once from `usable()` (found_queryset), the
        # token and its user built from the row as the ORM builds them; the query builder cost more than the rest
        # of a short list (docs/benchmarks.md).
        row = FOUND.fetchone(database.alias, key_hash=wanted, now=timezone.now())
        if row is None:
            return None
        token_reader, user_reader = found_readers(database.alias)
        token = token_reader.build(row[:len(token_reader.columns)])
        if not hmac.compare_digest(token.key_hash, wanted):
            return None
        token.user = user_reader.build(row[len(token_reader.columns):])
        return token

    @classmethod
    def caller(cls, plaintext: str, *, permission: str) -> Caller | None:
        """The token's caller and whether they hold `permission` ("app_label.codename"); None for a bad token.

        The gateway's read on every call: one statement compiled once from `usable()` and the permission
        rule below, so it costs a fraction of the query builder (docs/benchmarks.md) and answers as
        `user.has_perm` does. With authentication backends other than Django's ModelBackend, their answer
        is asked for instead. Records the token's use at most once a minute, like the API's authentication.
        """
        if not could_be_a_token(plaintext):
            return None
        app_label, codename = permission.split(".", 1)
        now = timezone.now()
        row = CALLER.fetchone(
            database.alias, key_hash=hash_token(plaintext), now=now, stale_before=now - LAST_USED_RESOLUTION,
            app_label=app_label, codename=codename,
        )
        if row is None:
            return None
        token_id, user_id, stale, may_call, scope, endpoint_limited, rpm, budget, period, superuser = row
        if stale:
            ApiToken(pk=token_id, last_used_at=None).touch()
        if not permissions_only_from_model_backend(tuple(settings.AUTHENTICATION_BACKENDS)):
            may_call = ApiToken.objects.select_related("user").get(pk=token_id).user.has_perm(permission)
        return Caller(token_id=token_id, user_id=user_id, may_call=bool(may_call), scope=scope,
                      endpoint_limited=bool(endpoint_limited), requests_per_minute=rpm, token_budget=budget,
                      budget_period=period, all_teams=bool(superuser))

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked:
            return "Revoked"
        return "Expired" if self.expired else "Active"

    def touch(self) -> None:
        """Record use, writing at most once per LAST_USED_RESOLUTION."""
        touch_last_used(self)


def caller_queryset(key_hash: str, now: datetime, stale_before: datetime, app_label: str, codename: str):
    """Who a token belongs to and whether they may do `app_label.codename`, as Django's ModelBackend decides:
    a superuser, or the permission given to the user directly or through one of their groups."""
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    holds_it = Exists(permission.filter(user=OuterRef("user"))) | Exists(permission.filter(group__user=OuterRef("user")))
    return (
        ApiToken.objects.usable(now)
        .filter(key_hash=key_hash)
        .annotate(
            stale=ExpressionWrapper(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before),
                                    output_field=models.BooleanField()),
            may_call=ExpressionWrapper(Q(user__is_superuser=True) | holds_it, output_field=models.BooleanField()),
            endpoint_limited=Exists(ApiToken.endpoints.through.objects.filter(apitoken_id=OuterRef("pk"))),
        )
        .values_list("id", "user_id", "stale", "may_call", "scope", "endpoint_limited",
                     "requests_per_minute", "token_budget", "budget_period", "user__is_superuser")
    )


def found_queryset(key_hash: str, now: datetime):
    """The usable token with this hash: its columns, then its user's (`find()` builds both from the row)."""
    user_fields = ApiToken._meta.get_field("user").related_model._meta.concrete_fields
    return (
        ApiToken.objects.usable(now).filter(key_hash=key_hash)
        .values_list(*[field.attname for field in ApiToken._meta.concrete_fields],
                     *[f"user__{field.attname}" for field in user_fields])
    )


@cache
def found_readers(alias: str) -> tuple[RowReader, RowReader]:
    return RowReader(ApiToken, alias), RowReader(ApiToken._meta.get_field("user").related_model, alias)


SAMPLE_TIME = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
FOUND = CompiledQuery(found_queryset, key_hash="sample-key-hash", now=SAMPLE_TIME)
CALLER = CompiledQuery(
    caller_queryset, key_hash="sample-key-hash", now=SAMPLE_TIME, stale_before=SAMPLE_TIME - LAST_USED_RESOLUTION,
    app_label="sample-app-label", codename="sample-codename",
)


@cache
def permissions_only_from_model_backend(backends: tuple[str, ...]) -> bool:
    """Whether Django's ModelBackend, whose rule `caller_queryset` compiles, is the only backend granting
    permissions (the others, such as the login throttle's, only authenticate)."""
    granting = [import_string(path) for path in backends if hasattr(import_string(path), "has_perm")]
    return all(backend is ModelBackend for backend in granting)
