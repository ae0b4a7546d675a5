"""Endpoint writes together with their destinations and audit entries (field names, never values)."""

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from audit.models import AuditEntry
from audit.services import audit_record

from .models import Destination, Endpoint


def destination_key(destination: Destination) -> tuple:
    return destination.role, destination.connection_id, destination.model, destination.weight


def arrange(destinations: Sequence[Destination]) -> list[Destination]:
    """Primaries first (in the order given), then fallbacks in order; positions numbered to match."""
    arranged = [d for d in destinations if d.role == Destination.Role.PRIMARY]
    arranged += [d for d in destinations if d.role == Destination.Role.FALLBACK]
    for position, destination in enumerate(arranged):
        destination.position = position
        if destination.role == Destination.Role.FALLBACK:
            destination.weight = None
    return arranged


def endpoint_save(
    *, endpoint: Endpoint, actor: AbstractBaseUser | None, destinations: Sequence[Destination] | None = None
) -> Endpoint:
    """Save a validated endpoint, and its destinations when given (they replace the stored ones), recording
    what changed in one transaction; no change writes nothing.

    The destinations' joint rules are checked here again (Endpoint.check_destinations), so no caller can
    store an endpoint without a primary or with weights that do not add up to 100.
    """
    creating = endpoint._state.adding
    changed = endpoint.changed_fields()
    new = None
    if destinations is not None:
        new = arrange(destinations)
        for destination in new:
            destination.endpoint = endpoint
        endpoint.check_destinations(new)
        old = [] if creating else list(endpoint.destinations.order_by("position"))
        if [destination_key(d) for d in old] != [destination_key(d) for d in new]:
            changed.append("destinations")
        else:
            new = None
    elif creating:
        endpoint.check_destinations([])
    elif "team" in changed or ("allow_mixed_environments" in changed and not endpoint.allow_mixed_environments):
        endpoint.check_destinations(list(endpoint.destinations.select_related("connection")))
    if not creating and not changed:
        return endpoint
    with transaction.atomic():
        endpoint.save()
        if new is not None:
            endpoint.destinations.all().delete()
            for destination in new:
                destination.pk = None
                destination.endpoint = endpoint
            Destination.objects.bulk_create(new)
        action = AuditEntry.Action.CREATED if creating else AuditEntry.Action.UPDATED
        audit_record(actor=actor, action=action, subject=endpoint, fields=changed)
    return endpoint


def endpoint_delete(*, endpoint: Endpoint, actor: AbstractBaseUser | None) -> None:
    """Delete an endpoint (its destinations with it) and record it."""
    with transaction.atomic():
        audit_record(actor=actor, action=AuditEntry.Action.DELETED, subject=endpoint)
        endpoint.delete()
