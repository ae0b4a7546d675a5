"""The `team` field of the API's connections and endpoints: a team named among the caller's own, so a team
of others is answered exactly like a team that does not exist."""

from rest_framework import serializers

from core.api import NameRelatedField

from .models import Team


def user_of(serializer_field: serializers.Field):
    request = serializer_field.context.get("request")
    return getattr(request, "user", None)


class TeamField(NameRelatedField):
    """A team by name, among those the request's user may put rows in (theirs; every team for a superuser)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "The team's name. Left out on create: the user's team, when they have one.")
        super().__init__(queryset=Team.objects.all(), **kwargs)

    def get_queryset(self):
        return Team.objects.of(user_of(self))


def only_team_of(user) -> Team | None:
    return Team.objects.sole_team_of(user)


NAME_THE_TEAM = "Name the team this belongs to (one of your teams)."
