from django.contrib import admin

from .models import Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "connection", "provider", "model", "task", "enabled", "updated_at"]
    list_filter = ["enabled", "task", "connection__provider"]
    list_select_related = ["connection"]
    search_fields = ["name", "model", "connection__name"]
    autocomplete_fields = ["connection"]

    @admin.display(description="Provider", ordering="connection__provider")
    def provider(self, obj: Endpoint) -> str:
        return obj.connection.get_provider_display()
