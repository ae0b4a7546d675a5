"""Endpoint writes together with their audit entries (field names, never values)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from audit.models import AuditEntry
from audit.services import audit_record

from .models import Endpoint


def endpoint_save(*, endpoint: Endpoint, actor: AbstractBaseUser | None) -> Endpoint:
    """Save a validated endpoint and record what changed in one transaction; no change writes nothing."""
    creating = endpoint._state.adding
    changed = endpoint.changed_fields()
    if not creating and not changed:
        return endpoint
    with transaction.atomic():
        endpoint.save()
        action = AuditEntry.Action.CREATED if creating else AuditEntry.Action.UPDATED
        audit_record(actor=actor, action=action, subject=endpoint, fields=changed)
    return endpoint


def endpoint_delete(*, endpoint: Endpoint, actor: AbstractBaseUser | None) -> None:
    """Delete an endpoint and record it."""
    with transaction.atomic():
        audit_record(actor=actor, action=AuditEntry.Action.DELETED, subject=endpoint)
        endpoint.delete()
