"""Token writes together with their audit entries."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import audit_record

from .models import ApiToken, Scope


def audit_fields(token: ApiToken, *, endpoint_names: list[str] | None = None) -> list[str]:
    """What the audit log names for a token: its display prefix, owner and what it is limited to, never the token."""
    fields = [f"token {token.prefix}", f"owner {token.user.get_username()}"]
    if token.scope != Scope.FULL:
        fields.append(f"scope {token.scope}")
    if endpoint_names:
        fields.append(f"endpoints {', '.join(endpoint_names)}")
    if token.limits_display:
        fields.append(f"limits {token.limits_display}")
    return fields


def token_create(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, expires_days: int | None = None,
    scope: str = Scope.FULL, endpoints=(), **limits,
) -> tuple[ApiToken, str]:
    """Issue a token for `user` (optionally limited to a scope and to some endpoints) and record it; returns
    the row and the plaintext to show once. Raises ValidationError for limits out of range."""
    endpoints = list(endpoints)
    with transaction.atomic():
        token, plaintext = ApiToken.issue(user=user, expires_days=expires_days, scope=scope, endpoints=endpoints,
                                          **limits)
        names = sorted(endpoint.name for endpoint in endpoints)
        audit_record(actor=actor, action=AuditEntry.Action.TOKEN_CREATED, subject=token,
                     fields=audit_fields(token, endpoint_names=names))
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
