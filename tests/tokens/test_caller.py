"""The gateway's caller lookup: the token rule of `find`, and the permission answer of `user.has_perm`, in one query."""

from datetime import timedelta
from itertools import product

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

PERMISSION = "endpoints.view_endpoint"
OTHER_PERMISSION = "endpoints.change_endpoint"


def grant(user, how: str, codename: str) -> None:
    permission = Permission.objects.get(content_type__app_label="endpoints", codename=codename)
    if how == "direct":
        user.user_permissions.add(permission)
    elif how == "group":
        group, _ = Group.objects.get_or_create(name=f"with-{codename}")
        group.permissions.add(permission)
        user.groups.add(group)


@pytest.mark.parametrize(
    "superuser, active, how, codename",
    list(product([False, True], [True, False], ["none", "direct", "group"], ["view_endpoint", "change_endpoint"])),
)
def test_the_permission_answer_is_what_has_perm_says_in_every_case(
    django_user_model, django_assert_num_queries, superuser, active, how, codename
):
    user = django_user_model.objects.create_user("someone", password="pw-123456-long", is_superuser=superuser)
    grant(user, how, codename)
    _, plaintext = ApiToken.issue(user=user)
    ApiToken.objects.update(last_used_at=timezone.now())  # fresh: the lookup writes nothing
    django_user_model.objects.filter(pk=user.pk).update(is_active=active)
    user = django_user_model.objects.get(pk=user.pk)

    for permission in (PERMISSION, OTHER_PERMISSION):
        with django_assert_num_queries(1):
            caller = ApiToken.caller(plaintext, permission=permission)
        if not active:
            assert caller is None  # an inactive user's token is no token, as for find()
            continue
        assert caller.may_call == user.has_perm(permission), (superuser, how, codename, permission)
        assert caller.user_id == user.pk


def test_a_caller_is_found_by_exactly_the_tokens_find_accepts(django_user_model):
    user = django_user_model.objects.create_user("alice", password="pw-123456-long")
    tokens = {name: ApiToken.issue(user=user) for name in ("good", "expired", "revoked", "expiring_later")}
    ApiToken.objects.filter(pk=tokens["expired"][0].pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    ApiToken.objects.filter(pk=tokens["revoked"][0].pk).update(revoked_at=timezone.now())
    ApiToken.objects.filter(pk=tokens["expiring_later"][0].pk).update(expires_at=timezone.now() + timedelta(days=1))

    for token, plaintext in [*tokens.values(), (None, "llmc_not-a-token"), (None, "not-even-prefixed")]:
        found = ApiToken.find(plaintext)
        caller = ApiToken.caller(plaintext, permission=PERMISSION)
        assert (caller is not None) == (found is not None), plaintext[:12]
        if found is not None:
            assert caller.token_id == found.pk == token.pk


def test_a_stale_last_use_is_recorded_and_a_fresh_one_is_not(django_user_model, django_assert_num_queries):
    user = django_user_model.objects.create_user("bob", password="pw-123456-long")
    token, plaintext = ApiToken.issue(user=user)

    with django_assert_num_queries(2):  # the lookup, then the one UPDATE
        ApiToken.caller(plaintext, permission=PERMISSION)
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(1):
        ApiToken.caller(plaintext, permission=PERMISSION)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first


def test_another_permission_backend_is_asked_instead_of_the_compiled_rule(django_user_model, settings):
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "tests.tokens.backends.EveryoneMayView"]
    user = django_user_model.objects.create_user("carol", password="pw-123456-long")
    _, plaintext = ApiToken.issue(user=user)

    assert ApiToken.caller(plaintext, permission=PERMISSION).may_call is True
    assert ApiToken.caller(plaintext, permission=OTHER_PERMISSION).may_call is False
