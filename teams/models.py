"""Teams: each connection and endpoint belongs to one, and a user who is not a superuser sees, changes, tests
and calls only the rows of their own teams. Django's model permissions still decide what a user may do;
teams decide on which rows.

Every surface scopes its rows with `visible_to(user)` (TeamScopedQuerySet), so the rule lives here once.
"""

from django.conf import settings
from django.db import models

from core.names import NAME_HELP, validate_name

# The team existing rows and fixtures without a team belong to (created by the migration that adds teams).
DEFAULT_TEAM_NAME = "default"


class TeamQuerySet(models.QuerySet):
    def default(self) -> "Team":
        """The default team, made if missing (a flushed test database, a fresh install)."""
        team, _ = self.get_or_create(name=DEFAULT_TEAM_NAME)
        return team

    def of(self, user) -> "TeamQuerySet":
        """The teams a user chooses among when creating or moving a row: theirs, or every team for a superuser."""
        if sees_all_teams(user):
            return self.order_by("name")
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(members=user).order_by("name")

    def sole_team_of(self, user) -> "Team | None":
        """The team a new row goes to when none is named: the only one `user` may choose (None with several)."""
        teams = list(self.of(user)[:2])
        return teams[0] if len(teams) == 1 else None


class Team(models.Model):
    """A group of users who share connections and endpoints."""

    name = models.CharField(max_length=64, unique=True, validators=[validate_name], help_text=NAME_HELP)
    description = models.TextField(blank=True, max_length=2000)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Team {self.name!r}>"


Membership = Team.members.through


def sees_all_teams(user) -> bool:
    return bool(getattr(user, "is_superuser", False) and getattr(user, "is_active", False))


def team_ids_of(user_id: int) -> models.QuerySet:
    """The ids of a user's teams, as a subquery (no query of its own)."""
    return Membership.objects.filter(user_id=user_id).values("team_id")


class TeamScopedQuerySet(models.QuerySet):
    """Rows that belong to a team (a `team` foreign key)."""

    def visible_to(self, user) -> "TeamScopedQuerySet":
        """The rows `user` may see at all: those of their teams; every row for a superuser; none anonymously.

        One condition with a subquery, so a list costs no query more than before."""
        if sees_all_teams(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(team_id__in=team_ids_of(user.pk))

    def of_team(self, name: str) -> "TeamScopedQuerySet":
        """The rows of the team named `name` (the lists' `?team=` filter)."""
        return self.filter(team__name=name)
