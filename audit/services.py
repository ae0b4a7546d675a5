"""Recording an action: the one way entries are written (by the apps' services, in their transactions)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from .models import AuditEntry

SYSTEM_ACTOR = "system"


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    subject: models.Model | None = None,
    subject_type: str = "",
    subject_name: str = "",
    fields: list[str] | tuple[str, ...] = (),
) -> AuditEntry:
    """Record an action; `actor=None` means the system (a command run without --user).

    `subject` is the row acted on (its audit type and name are read from it: `audit_subject_type`, `name`);
    or give `subject_type` and `subject_name` for something without a row of its own. The entry is seen by
    the members of the subject's team (`team_id`); one without a team by superusers and its actor.
    """
    if subject is not None:
        subject_type = subject_type or subject.audit_subject_type
        subject_name = subject_name or subject.name
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else SYSTEM_ACTOR,
        action=action,
        subject_type=subject_type,
        subject_id=subject.pk if subject is not None else None,
        subject_name=subject_name,
        fields=list(fields),
        team_id=getattr(subject, "team_id", None),
    )
