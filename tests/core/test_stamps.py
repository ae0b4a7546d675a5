"""Every write to a stamped table changes its write stamp, whichever way it is made; a read does not."""

import pytest
from django.db import connection, transaction

from connections.models import Connection
from core.models import WriteStamp
from endpoints.models import Endpoint
from teams.models import Membership, Team

pytestmark = pytest.mark.django_db


def stamp(table: str) -> int | None:
    return WriteStamp.objects.filter(table_name=table).values_list("stamp", flat=True).first()


def test_the_tables_the_lists_count_are_stamped():
    for model in (Connection, Endpoint, Team, Membership):
        assert stamp(model._meta.db_table) is not None, model


def test_each_kind_of_write_changes_the_stamp_and_a_read_does_not():
    table = Team._meta.db_table
    seen = [stamp(table)]

    def changed() -> bool:
        seen.append(stamp(table))
        return seen[-1] != seen[-2]

    team = Team.objects.create(name="a")
    assert changed()
    team.description = "edited"
    team.save()
    assert changed()
    Team.objects.filter(pk=team.pk).update(description="again")
    assert changed()
    Team.objects.bulk_create([Team(name="b"), Team(name="c")])
    assert changed()
    Team.objects.filter(name__in=["b", "c"]).delete()
    assert changed()
    with connection.cursor() as cursor:  # as another program writing to the database would
        cursor.execute(f"DELETE FROM {table} WHERE name = %s", ["a"])
    assert changed()
    list(Team.objects.all())
    Team.objects.filter(name="missing").exists()
    assert not changed()


def test_joining_and_leaving_a_team_changes_the_memberships_stamp(django_user_model):
    user, team = django_user_model.objects.create_user("joiner"), Team.objects.create(name="joined")
    before = stamp(Membership._meta.db_table)
    team.members.add(user)
    joined = stamp(Membership._meta.db_table)
    team.members.remove(user)

    assert len({before, joined, stamp(Membership._meta.db_table)}) == 3


def test_a_write_rolled_back_leaves_the_stamp_as_it_was():
    before = stamp(Team._meta.db_table)
    with pytest.raises(RuntimeError), transaction.atomic():
        Team.objects.create(name="undone")
        assert stamp(Team._meta.db_table) != before
        raise RuntimeError

    assert stamp(Team._meta.db_table) == before
