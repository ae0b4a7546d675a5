from django.apps import AppConfig


class TeamsConfig(AppConfig):
    """Who may see which connections and endpoints: a user sees the rows of their teams (a superuser, all)."""

    name = "teams"
