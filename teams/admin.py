from django.contrib import admin

from .models import Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams and their members. A user who is not a superuser sees only the teams they belong to."""

    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return Team.objects.of(request.user)
