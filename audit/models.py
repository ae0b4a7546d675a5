from django.conf import settings
from django.db import models
from django.utils import timezone

from teams.models import sees_all_teams, team_ids_of


class AuditEntryQuerySet(models.QuerySet):
    def visible_to(self, user) -> "AuditEntryQuerySet":
        """The entries `user` may read: about rows of their teams, and their own actions on things without a
        team (their tokens); every entry for a superuser."""
        if sees_all_teams(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(models.Q(team_id__in=team_ids_of(user.pk))
                           | models.Q(team_id__isnull=True, actor_id=user.pk))


class AuditEntry(models.Model):
    """Who did what and when, to which connection, endpoint or token: field names, never values.

    The subject is named by type, id and its name at the time, not by a foreign key: entries outlive what
    they describe, and the log sits below the apps that write to it (settings.AUDIT_SUBJECTS maps the types
    to their models for pages that show the current name).
    """

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        KEY_ROTATED = "key_rotated", "Key rotated"
        DELETED = "deleted", "Deleted"
        ENCRYPTION_KEY_ROTATED = "encryption_key_rotated", "Encryption key rotated"
        TOKEN_CREATED = "token_created", "API token created"
        TOKEN_REVOKED = "token_revoked", "API token revoked"
        ROTATION_POLICY_CHANGED = "rotation_policy_changed", "Rotation policy changed"

    class Subject(models.TextChoices):
        CONNECTION = "connection", "Connection"
        ENDPOINT = "endpoint", "Endpoint"
        TOKEN = "token", "API token"
        NONE = "", "—"  # the whole installation (an encryption key rotation)

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="The username at the time, or 'system'.")
    action = models.CharField(max_length=32, choices=Action.choices)
    subject_type = models.CharField(max_length=16, choices=Subject.choices, blank=True, default="")
    subject_id = models.BigIntegerField(null=True, blank=True, help_text="The subject's primary key, if it had one.")
    subject_name = models.CharField(max_length=64, blank=True, help_text="The subject's name at the time.")
    fields = models.JSONField(default=list, blank=True, help_text="Names of the fields that changed.")
    # The subject's team at the time (by id, like the subject): only its members see the entry.
    team_id = models.BigIntegerField(null=True, blank=True, db_index=True,
                                     help_text="The team of the subject at the time, if it had one.")

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="audit_subject")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.subject_name}".strip()

    @property
    def connection_name(self) -> str:
        """The connection's name at the time, for entries about a connection."""
        return self.subject_name if self.subject_type == self.Subject.CONNECTION else ""

    @property
    def endpoint_name(self) -> str:
        """The endpoint's name at the time, for entries about an endpoint."""
        return self.subject_name if self.subject_type == self.Subject.ENDPOINT else ""
