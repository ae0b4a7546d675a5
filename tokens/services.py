"""Token writes together with their audit entries."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import audit_record

from .models import ApiToken


def audit_fields(token: ApiToken) -> list[str]:
    """What the audit log names for a token: its display prefix and owner, never the token."""
    return [f"token {token.prefix}", f"owner {token.user.get_username()}"]


def token_create(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, expires_days: int | None = None
) -> tuple[ApiToken, str]:
    """Issue a token for `user` and record it; returns the row and the plaintext to show once."""
    with transaction.atomic():
        token, plaintext = ApiToken.issue(user=user, expires_days=expires_days)
        audit_record(actor=actor, action=AuditEntry.Action.TOKEN_CREATED, subject=token, fields=audit_fields(token))
    return token, plaintext


def token_revoke(*, token: ApiToken, actor: AbstractBaseUser | None) -> ApiToken:
    """Revoke a token (kept for the record) and log it; revoking twice changes nothing."""
    if token.revoked:
        return token
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action=AuditEntry.Action.TOKEN_REVOKED, subject=token, fields=audit_fields(token))
    return token
