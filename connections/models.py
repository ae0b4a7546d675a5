from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import ExpressionWrapper, F, Q
from django.utils import timezone

from encrypted_model_fields import fields as encrypted_fields

from audit.models import AuditEntry
from core.changes import RemembersLoadedState
from core.last_used import is_stale, touch_last_used
from core.names import NAME_HELP, validate_name
from core.redaction import remember_secrets
from providers import catalogue
from providers.account import Account
from teams.models import Team, TeamScopedQuerySet

from .fields import EncryptedSecretsField
from .secrets import UNDECRYPTABLE_LABEL, SecretsUnavailable, UndecryptableSecrets, looks_like_a_mask, mask_secret

TRACKED_FIELDS = (
    "name", "team", "provider", "auth_method", "secrets", "config", "description", "key_max_age_days", "environment",
)
# The rotation policy: a key is "due soon" in the last days before its maximum age, then "overdue".
DUE_SOON_DAYS = 14
KEY_MAX_AGE_LIMIT_DAYS = 3650
# Auth methods without a secret (a local Ollama): nothing to rotate, so never due.
KEYLESS_METHODS = sorted(
    {m.id for p in catalogue.PROVIDER_LIST for m in p.auth_methods if not m.secret_fields}
    - {m.id for p in catalogue.PROVIDER_LIST for m in p.auth_methods if m.secret_fields}
)


class Environment(models.TextChoices):
    """Where a connection's key is meant to be used. Production is the default: a key nobody labelled is
    handled as the one needing the most care (it is never mixed with non-production ones unless allowed)."""

    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


def environments_mixed(environments) -> bool:
    """Whether production and non-production environments are among these."""
    kinds = {environment == Environment.PRODUCTION for environment in environments}
    return len(kinds) > 1


class Rotation(models.TextChoices):
    """Where a connection's key stands against its maximum age."""

    OK = "ok", "OK"
    DUE_SOON = "due_soon", "Due soon"
    OVERDUE = "overdue", "Overdue"
    NO_KEY = "no_key", "No key"


class ConnectionQuerySet(TeamScopedQuerySet):
    def rotation(self, status: str, now: datetime | None = None) -> "ConnectionQuerySet":
        """The connections whose key is in `status` (a Rotation value) now, decided in the database.

        A connection on the default policy is compared with KEY_MAX_AGE_DAYS as configured now; one with its
        own maximum age carries its due date (`own_key_due_at`, kept by save()).
        """
        now = now or timezone.now()
        if status == Rotation.NO_KEY:
            return self.filter(auth_method__in=KEYLESS_METHODS)
        default_due_from = now - timedelta(days=settings.KEY_MAX_AGE_DAYS)  # set before it: overdue
        soon = timedelta(days=DUE_SOON_DAYS)
        on_default = Q(key_max_age_days__isnull=True)
        if status == Rotation.OVERDUE:
            rule = (on_default & Q(secrets_updated_at__lte=default_due_from)) | Q(own_key_due_at__lte=now)
        elif status == Rotation.DUE_SOON:
            rule = (on_default & Q(secrets_updated_at__gt=default_due_from,
                                   secrets_updated_at__lte=default_due_from + soon)) | Q(
                own_key_due_at__gt=now, own_key_due_at__lte=now + soon)
        elif status == Rotation.OK:
            rule = (on_default & Q(secrets_updated_at__gt=default_due_from + soon)) | Q(own_key_due_at__gt=now + soon)
        else:
            raise ValueError(f"Unknown rotation status {status!r}")
        return self.exclude(auth_method__in=KEYLESS_METHODS).filter(rule)


class KeyRotation(NamedTuple):
    age_days: int | None  # whole days since the key was set
    due_at: datetime | None  # when it becomes overdue
    status: str  # a Rotation value


def key_rotation(auth_method: str, secrets_updated_at: datetime | None, created_at: datetime | None,
                 key_max_age_days: int | None, now: datetime | None = None) -> KeyRotation:
    """Where a key stands against its maximum age, from the row's columns (lists read them without the model).

    The key was set when the secrets were last updated, or at creation when nothing changed them since.
    """
    set_at = secrets_updated_at or created_at
    if auth_method in KEYLESS_METHODS or set_at is None:
        return KeyRotation(None, None, Rotation.NO_KEY)
    now = now or timezone.now()
    due = set_at + timedelta(days=key_max_age_days or settings.KEY_MAX_AGE_DAYS)
    status = (Rotation.OVERDUE if due <= now else
              Rotation.DUE_SOON if due <= now + timedelta(days=DUE_SOON_DAYS) else Rotation.OK)
    return KeyRotation(max((now - set_at).days, 0), due, status)


class Connection(RemembersLoadedState, models.Model):
    """A named provider credential that any number of endpoints share; endpoints read it at call time."""

    name = models.CharField(max_length=64, unique=True, validators=[validate_name], help_text=NAME_HELP)
    # PROTECT: a team cannot be deleted while it holds connections. Names stay unique across teams: URLs,
    # commands and the endpoints' destinations name a connection by its name alone.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="connections",
                             help_text="Only the team's members see, use and change this connection.")
    provider = models.CharField(
        max_length=32,
        choices=catalogue.provider_choices,
        error_messages={"invalid_choice": "Unknown provider '%(value)s'."},
    )
    auth_method = models.CharField("authentication method", max_length=32)
    secrets = EncryptedSecretsField(default=dict, blank=True, editable=False)
    config = models.JSONField(default=dict, blank=True, editable=False)
    description = models.TextField(blank=True, max_length=2000)
    environment = models.CharField(
        max_length=16, choices=Environment.choices, default=Environment.PRODUCTION, db_index=True,
        help_text="Where this key is meant to be used. An endpoint does not mix production and other keys "
                  "unless it allows it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    secrets_updated_at = models.DateTimeField("last updated", null=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    key_max_age_days = models.PositiveIntegerField(
        "maximum key age (days)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(KEY_MAX_AGE_LIMIT_DAYS)],
        help_text="Rotate the key at least this often. Empty: the server's KEY_MAX_AGE_DAYS.",
    )
    # secrets_updated_at + key_max_age_days when the connection has its own maximum age (kept by save()), so
    # that lists filter on it in the database; connections on the default are compared with the setting.
    own_key_due_at = models.DateTimeField(null=True, editable=False, db_index=True)

    objects = ConnectionQuerySet.as_manager()

    audit_subject_type = "connection"
    tracked_fields = TRACKED_FIELDS

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} {self.provider}/{self.auth_method}>"

    # --- What changed since loading (RemembersLoadedState keeps the loaded values) ---------------------

    def method_changed(self) -> bool:
        """True when provider or auth method differ from the stored ones (the stored secrets no longer apply)."""
        return not self._state.adding and (
            self.provider != self.loaded_value("provider") or self.auth_method != self.loaded_value("auth_method")
        )

    def changed_fields(self) -> list[str]:
        """Names of what changed since loading: `name`, `config.region`, `secrets.api_key`… never values."""
        loaded = {} if self._state.adding else getattr(self, "_loaded", {})
        changed = [
            name
            for name in ("name", "provider", "auth_method", "description", "environment")
            if getattr(self, name) != loaded.get(name, "")
        ]
        if self.team_id != loaded.get("team"):
            changed.append("team")
        if self.key_max_age_days != loaded.get("key_max_age_days"):
            changed.append("key_max_age_days")
        changed += [f"config.{key}" for key in changed_keys(loaded.get("config") or {}, self.config)]
        old_secrets = loaded.get("secrets")
        if isinstance(self.secrets, dict):
            old_secrets = old_secrets if isinstance(old_secrets, dict) else {}
            changed += [f"secrets.{key}" for key in changed_keys(old_secrets, self.secrets)]
        return changed

    def secrets_changed(self) -> bool:
        return self._state.adding or self.secrets != self.loaded_value("secrets")

    def team_changed(self) -> bool:
        return not self._state.adding and self.team_id != self.loaded_value("team")

    def policy_changed(self) -> bool:
        """Whether the connection's own maximum key age differs from the stored one."""
        return not self._state.adding and self.key_max_age_days != self.loaded_value("key_max_age_days")

    # --- Rotation policy -----------------------------------------------------------------------------

    @property
    def has_key(self) -> bool:
        return self.auth_method not in KEYLESS_METHODS

    @property
    def effective_key_max_age_days(self) -> int:
        return self.key_max_age_days or settings.KEY_MAX_AGE_DAYS

    @property
    def key_set_at(self) -> datetime | None:
        """When the credentials now stored were set (at creation, when nothing changed them since)."""
        return self.secrets_updated_at or self.created_at

    @property
    def key_due_at(self) -> datetime | None:
        """When the key becomes overdue for rotation; None for a connection without a key."""
        return key_rotation(self.auth_method, self.secrets_updated_at, self.created_at, self.key_max_age_days).due_at

    @property
    def key_age_days(self) -> int | None:
        """Whole days since the key was set; None for a connection without a key."""
        return key_rotation(self.auth_method, self.secrets_updated_at, self.created_at, self.key_max_age_days).age_days

    @property
    def rotation_status(self) -> str:
        return key_rotation(self.auth_method, self.secrets_updated_at, self.created_at, self.key_max_age_days).status

    @property
    def rotation_label(self) -> str:
        return Rotation(self.rotation_status).label

    # --- Secrets -------------------------------------------------------------------------------------

    @property
    def auth_method_spec(self) -> catalogue.AuthMethod | None:
        provider = catalogue.PROVIDERS.get(self.provider)
        return provider.auth_method(self.auth_method) if provider else None

    @property
    def secrets_decryptable(self) -> bool:
        return not isinstance(self.secrets, UndecryptableSecrets)

    def get_secrets(self) -> dict[str, str]:
        """The plaintext secrets, for the gateway and Test; raises SecretsUnavailable naming the connection."""
        if not self.secrets_decryptable:
            raise SecretsUnavailable(self.name)
        self.remember_for_redaction(self.secrets)  # logs written while they are in use redact them
        return dict(self.secrets)

    def account(self) -> Account:
        """The provider account to call with: these secrets as stored now; SecretsUnavailable if unreadable."""
        provider, method = catalogue.resolve(self.provider, self.auth_method)
        return Account(
            name=self.name, provider=provider, method=method, secrets=self.get_secrets(), config=dict(self.config),
            id=self.pk, secrets_version=self.secrets_updated_at,
        )

    def remember_for_redaction(self, secrets: dict) -> None:
        method = self.auth_method_spec
        remember_secrets(method.values_to_redact(secrets) if method else secrets.values())

    def masked_secrets(self) -> dict[str, str]:
        """Field name → mask, or → `cannot be decrypted` for every field when no key decrypts the row."""
        return masked_secrets(self.provider, self.auth_method, self.secrets)

    @property
    def credentials_display(self) -> str:
        """One line for lists: the mask (labelled when the method has several secrets)."""
        return credentials_display(self.provider, self.auth_method, self.secrets)

    def update_secrets(self, changes: dict) -> None:
        """Merge the given secret fields into the stored ones; empty values keep what is stored.

        After a change of provider or auth method the stored secrets no longer apply, so the merge
        starts from nothing and `clean()` asks for every required field.
        """
        changes = {name: value for name, value in changes.items() if not is_blank(value)}
        self.remember_for_redaction(changes)  # logs written while handling the new values redact them
        if self.method_changed() or not self.secrets_decryptable:
            if not changes and not self.method_changed():
                return  # nothing re-entered: keep the undecryptable ciphertext as it is
            self.secrets = changes
            return
        self.secrets = {**self.secrets, **changes}

    # --- Validation and saving -----------------------------------------------------------------------

    def clean(self) -> None:
        """Provider × auth method × secrets × config, as the catalogue says."""
        if self.provider not in catalogue.PROVIDERS:
            return  # the field's own choice check reports it
        _, method = catalogue.resolve(self.provider, self.auth_method)
        errors: dict = {}
        if self.method_changed() and not self.secrets_decryptable:
            self.secrets = {}
        if self.secrets_decryptable:
            try:
                self.secrets = catalogue.clean_secrets(method, self.secrets, is_placeholder=looks_like_a_mask)
            except ValidationError as error:
                errors.update(error.error_dict)
        try:
            self.config = catalogue.clean_config(method, self.config)
        except ValidationError as error:
            errors.update(error.error_dict)
        if self.team_changed() and (users := list(self.endpoints.exclude(team_id=self.team_id).distinct()
                                                  .values_list("name", flat=True))):
            errors["team"] = (f"Endpoints of its team use this connection ({', '.join(users)}); an endpoint uses "
                              f"only its own team's connections: move them or change their destinations first.")
        if errors:
            raise ValidationError(errors)

    def clean_fields(self, exclude=None) -> None:
        if self.team_id is None:
            self.team = Team.objects.default()
        # Who created and last changed it are set by the services from the signed-in user, never from input:
        # checking that the user exists would cost a query each on every save. Nor is the stored team checked.
        exclude = {*(exclude or ()), "created_by", "updated_by"}
        if not self._state.adding and self.team_id == self.loaded_value("team"):
            exclude.add("team")
        super().clean_fields(exclude=exclude)

    def validate_unique(self, exclude=None) -> None:
        """As Django's, without the query for a name that is the stored row's own (the table holds it once)."""
        if not self._state.adding and self.name == self.loaded_value("name"):
            exclude = {*(exclude or ()), "name"}
        super().validate_unique(exclude)

    def save(self, *args, **kwargs) -> None:
        if self.team_id is None:
            self.team = Team.objects.default()
        if self.secrets_changed():
            self.secrets_updated_at = timezone.now()
        self.own_key_due_at = (
            self.secrets_updated_at + timedelta(days=self.key_max_age_days)
            if self.key_max_age_days and self.secrets_updated_at else None
        )
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "secrets_updated_at", "own_key_due_at"}
        super().save(*args, **kwargs)

    def audit_entries(self) -> models.QuerySet[AuditEntry]:
        """What was done to this connection, newest first."""
        return AuditEntry.objects.filter(subject_type=self.audit_subject_type, subject_id=self.pk).order_by("-at", "-id")

    def last_used_is_stale(self) -> bool:
        """Whether a use now is worth writing down (at most once a minute)."""
        return is_stale(self.last_used_at, timezone.now())

    def touch_last_used(self, *, now: datetime | None = None) -> bool:
        """Record a gateway call (at most one write a minute); True if this wrote."""
        return touch_last_used(self, now=now)


def masked_secrets(provider: str, auth_method: str, secrets: dict | UndecryptableSecrets) -> dict[str, str]:
    """A connection's masks from its stored values (lists read them without building the model)."""
    found = catalogue.PROVIDERS.get(provider)
    method = found.auth_method(auth_method) if found else None
    if isinstance(secrets, UndecryptableSecrets):
        return {f.name: UNDECRYPTABLE_LABEL for f in (method.secret_fields if method else ())}
    return {name: mask_secret(value, method.secret_field(name) if method else None) for name, value in secrets.items()}


def credentials_display(provider: str, auth_method: str, secrets: dict | UndecryptableSecrets) -> str:
    """One line for lists: the mask (labelled when the method has several secrets)."""
    if isinstance(secrets, UndecryptableSecrets):
        return UNDECRYPTABLE_LABEL
    return credentials_line(masked_secrets(provider, auth_method, secrets))


def credentials_line(masks: dict[str, str]) -> str:
    """The masks of decryptable secrets on one line."""
    if not masks:
        return "no credentials"
    if len(masks) == 1:
        return next(iter(masks.values()))
    labels = catalogue.FIELD_LABELS
    return ", ".join(f"{labels.get(name, name)}: {mask}" for name, mask in masks.items())


# The stored column as text, undecrypted: what `masks_of_stored()` takes.
STORED_SECRETS = ExpressionWrapper(F("secrets"), output_field=models.TextField())


def masks_of_stored(ciphertext: str | None, provider: str, auth_method: str) -> tuple[bool, dict[str, str]]:
    """Whether the stored secrets decrypt, and their masks, from the column as stored (for lists).

    Decrypting is most of a long list's time (an AES and an HMAC object a row), and lists show the same rows
    again and again, so the masks are remembered by ciphertext, provider, method and the configured keys:
    any change of the secrets writes a new ciphertext, and other keys are another entry. The masks, never
    the secrets, are what is kept.
    """
    decryptable, masks = _masks_of_stored(encrypted_fields.CRYPTER, ciphertext, provider, auth_method)
    return decryptable, dict(masks)


@lru_cache(maxsize=8192)
def _masks_of_stored(crypter, ciphertext: str | None, provider: str, auth_method: str) -> tuple[bool, tuple]:
    secrets = Connection._meta.get_field("secrets").from_db_value(ciphertext, None, None)
    masks = masked_secrets(provider, auth_method, secrets)
    return not isinstance(secrets, UndecryptableSecrets), tuple(masks.items())


def each_endpoint_once() -> models.Prefetch:
    """Prefetch a connection's endpoints (those of every destination using it), each endpoint once although
    several of its destinations may use the connection."""
    endpoint_model = Connection.endpoints.rel.related_model
    return models.Prefetch("endpoints", queryset=endpoint_model.objects.order_by("name").distinct())


def changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
