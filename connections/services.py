"""What is done to a connection in several steps: saving or deleting it with its audit entry, rotating a
key, and testing its credentials with the provider (as stored, or as typed before they are saved)."""

import hmac
import json
import os
import uuid
from dataclasses import replace

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from audit.models import AuditEntry
from audit.services import audit_record
from providers.adapters.base import CredentialsCheck
from providers.client import check_credentials_sync

from .models import Connection
from .secrets import SecretsUnavailable


POLICY_FIELD = "key_max_age_days"


class ConnectionInUse(Exception):
    """The connection still has endpoints, so it was not deleted."""

    def __init__(self, connection: Connection, endpoint_names: list[str]):
        self.connection = connection
        self.endpoint_names = endpoint_names
        super().__init__(
            f"Connection '{connection.name}' is used by {len(endpoint_names)} endpoint(s): "
            f"{', '.join(endpoint_names)}. Delete them or move them to another connection first."
        )


def connection_save(*, connection: Connection, actor: AbstractBaseUser | None) -> Connection:
    """Save a validated connection and record what changed (field names only) in one transaction.

    A change of secrets alone is recorded as a key rotation. Saving with no change writes nothing.
    """
    creating = connection._state.adding
    changed = connection.changed_fields()
    if not creating and not changed:
        return connection
    policy_changed = connection.policy_changed()
    old_days = connection.loaded_value(POLICY_FIELD)
    if not creating:
        # A change of the rotation policy is an entry of its own, so the log answers "who changed it" directly.
        changed = [name for name in changed if name != POLICY_FIELD]
    action = None
    if creating:
        connection.created_by = actor
        action = AuditEntry.Action.CREATED
    elif changed and all(name.startswith("secrets.") for name in changed):
        action = AuditEntry.Action.KEY_ROTATED
    elif changed:
        action = AuditEntry.Action.UPDATED
    connection.updated_by = actor
    # Edits call this inside their own transaction (the row is locked there): no savepoint of its own, two
    # round trips less; an error still undoes the whole edit, which no caller goes on from.
    with transaction.atomic(savepoint=False):
        connection.save()
        if action is not None:
            audit_record(actor=actor, action=action, subject=connection, fields=changed)
        if policy_changed:
            audit_record(actor=actor, action=AuditEntry.Action.ROTATION_POLICY_CHANGED, subject=connection,
                         fields=[policy_change(old_days, connection.key_max_age_days)])
    return connection


def policy_change(old_days: int | None, new_days: int | None) -> str:
    """The policy change as the audit log shows it (not a secret: a number of days, or the default)."""

    def shown(days: int | None) -> str:
        return f"{days} days" if days else "default"

    return f"{POLICY_FIELD}: {shown(old_days)} → {shown(new_days)}"


def connection_delete(*, connection: Connection, actor: AbstractBaseUser | None) -> None:
    """Delete a connection no endpoint uses, recording it; raise ConnectionInUse otherwise.

    The refusal comes as ProtectedError, or, when an endpoint was attached concurrently (after the
    PROTECT check, before the delete committed), as the database's deferred foreign-key IntegrityError;
    both end up as ConnectionInUse. The foreign keys are checked before this returns, not at the commit
    of a caller's outer transaction (the admin's), where the refusal would surface as a server error.
    """
    pk = connection.pk
    try:
        with transaction.atomic():
            audit_record(actor=actor, action=AuditEntry.Action.DELETED, subject=connection)
            connection.delete()
            destinations_table = Connection.destinations.rel.related_model._meta.db_table
            transaction.get_connection().check_constraints(table_names=[destinations_table])
    except (ProtectedError, IntegrityError):
        connection.pk = pk  # delete() cleared it, but the row is still there
        names = list(connection.endpoints.order_by("name").values_list("name", flat=True).distinct())
        if not names:
            raise
        raise ConnectionInUse(connection, names) from None


def connection_rotate_key(
    *, connection: Connection, field: str, value: str, actor: AbstractBaseUser | None
) -> Connection:
    """Replace one secret field through the registry's validation and record it as a key rotation.

    The row is read again, locked, in the saving transaction: callers (a command waiting for a typed key)
    may hold `connection` for a while, and an edit made meanwhile must survive. Returns the saved row.
    Raises ValidationError (keyed `secrets.<field>`, never carrying the value) when the registry refuses it,
    and Connection.DoesNotExist when the connection was deleted meanwhile.
    """
    with transaction.atomic():
        current = Connection.objects.select_for_update().get(pk=connection.pk)
        current.update_secrets({field: value})
        current.full_clean()
        return connection_save(connection=current, actor=actor)


def connection_test(*, connection: Connection) -> CredentialsCheck:
    """Whether the provider accepts the connection's stored credentials; never raises, never echoes a secret."""
    try:
        account = connection.account()
    except SecretsUnavailable as error:
        return CredentialsCheck(False, None, str(error))
    return check_credentials_sync(account)


FINGERPRINT_KEY = os.urandom(32)
# Access tokens obtained while testing unsaved credentials are cached under this account id with a fresh version
# each time: never mistaken for the stored connection's token, and each test evicts the one before.
UNSAVED_ACCOUNT_ID = "unsaved-credentials"


def connection_test_unsaved(*, connection: Connection) -> CredentialsCheck:
    """Whether the provider accepts a connection's credentials as edited but not saved; never raises or echoes.

    `connection` has passed `full_clean()` (the URL and header rules of a save), with typed secrets merged into
    the stored ones as a save would (`update_secrets`: a blank field is the stored value). Nothing is written.
    """
    try:
        account = connection.account()
    except SecretsUnavailable as error:
        return CredentialsCheck(False, None, str(error))
    # Not the stored connection's identity: a token it cached must not answer for credentials typed now.
    account = replace(account, id=UNSAVED_ACCOUNT_ID, secrets_version=uuid.uuid4().hex)
    return check_credentials_sync(account)


class CredentialsNotVerified(Exception):
    """Save was asked to verify the credentials first, and the provider rejected them or could not be asked."""

    def __init__(self, check: CredentialsCheck, *, readable: bool = True):
        self.check = check
        if not readable:
            message = f"Not saved: the credentials could not be verified. {check.message}"
        elif check.status is None:
            # No answer came: unreachable, timed out, an address refused, an answer that could not be read.
            message = f"Not saved: the provider could not be reached to verify the credentials. {check.message}"
        else:
            message = f"Not saved: the provider did not accept the credentials. {check.message}"
        super().__init__(message)


def credentials_of(connection: Connection) -> str:
    """A digest of what a credentials check depends on, to tell whether what is saved is what was checked.

    Keyed with a random key of this process (the check and the save are one request): never the values.
    """
    secrets = dict(connection.secrets) if connection.secrets_decryptable else None
    document = json.dumps([connection.provider, connection.auth_method, secrets, connection.config],
                          sort_keys=True, default=str)
    return hmac.new(FINGERPRINT_KEY, document.encode(), "sha256").hexdigest()


def connection_verify(*, connection: Connection) -> str:
    """Ask the provider about a validated, unsaved connection's credentials before saving it.

    Returns what was verified (`credentials_of`), for the save to confirm it is saving just that; raises
    CredentialsNotVerified otherwise. Called outside any transaction: no row stays locked over the call.
    """
    check = connection_test_unsaved(connection=connection)
    if not check.ok:
        raise CredentialsNotVerified(check, readable=connection.secrets_decryptable)
    return credentials_of(connection)
