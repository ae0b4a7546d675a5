"""API tokens: random `llmc_` strings shown once; only their SHA-256 is stored."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "llmc_"
# Characters of the token kept in clear to tell tokens apart: `llmc_` and 6 of its ~43 random characters.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
# last_used_at is written at most this often per token, so authenticated traffic does not write every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 (a fast hash is right for 256 random bits; no password hasher)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> "ApiTokenQuerySet":
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class ApiToken(models.Model):
    """A bearer credential for the API and gateway, acting as its owner; revocable and optionally expiring."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it (not secret).")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}…"

    def __repr__(self) -> str:
        return f"<ApiToken {self.prefix}… of user {self.user_id}>"

    @classmethod
    def issue(cls, *, user, expires_days: int | None = None) -> tuple["ApiToken", str]:
        """Create a token for `user`; returns the row and the plaintext, which is never stored."""
        plaintext = generate_token()
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        token = cls.objects.create(
            user=user, prefix=plaintext[:DISPLAY_PREFIX_LENGTH], key_hash=hash_token(plaintext), expires_at=expires_at
        )
        return token, plaintext

    @classmethod
    def find(cls, plaintext: str) -> "ApiToken | None":
        """The usable token with this plaintext (looked up by hash, so lookup time says nothing of the token)."""
        if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
            return None
        wanted = hash_token(plaintext)
        token = cls.objects.usable().select_related("user").filter(key_hash=wanted).first()
        if token is None or not hmac.compare_digest(token.key_hash, wanted) or not token.user.is_active:
            return None
        return token

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
        now = timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ApiToken.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now
