"""The `team` field of the connection and endpoint forms: chosen among the user's own teams."""

from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ValidationError

from core.rows import CompiledQuery

from .models import Team, sees_all_teams

CHOOSE_A_TEAM = "Choose the team this belongs to (one of your teams)."


class TeamChoiceMixin:
    """For a ModelForm with a `team` field, built with `user=`: only the teams `user` may put rows in (every team
    for a superuser) are offered; left empty, a new row goes to the user's only team and a stored one keeps its
    team."""

    def limit_team_choices(self, user) -> None:
        self.team_user = user
        field = self.fields.get("team")
        if field is None:
            return
        field.required = False  # the rule is clean_team's: a form posted without it (a script) still works
        if user is None:
            return  # built without a user: every team, and the model's default team when none is given
        field.queryset = Team.objects.of(user)
        if self.instance.team_id is None and not self.is_bound:
            field.initial = Team.objects.sole_team_of(user)

    team_user = None

    def clean_team(self) -> Team | None:
        team = self.cleaned_data.get("team")
        if self.team_user is None:
            return team  # no user to choose for: the model's default team when none is given
        if team is None:
            team = self.instance.team if self.instance.team_id else Team.objects.sole_team_of(self.team_user)
        if team is None:
            raise ValidationError(CHOOSE_A_TEAM, code="required")
        return team


# Every team's name, in the teams' order: a statement compiled once (a list page reads it on every request).
TEAM_NAMES = CompiledQuery(lambda: Team.objects.values_list("name"))


def team_filter_context(user, filters: dict) -> dict:
    """A list's team filter, for superusers (who see every team's rows; others see only their own anyway)."""
    if not sees_all_teams(user):
        return {}
    return {"team_choices": [(name, name, urlencode({**filters, "team": name}))
                             for name, in TEAM_NAMES.fetchall(Team.objects.db)],
            "team_all": urlencode({k: v for k, v in filters.items() if k != "team"})}
