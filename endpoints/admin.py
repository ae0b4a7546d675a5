from django.contrib import admin

from .models import Endpoint
from .services import endpoint_delete, endpoint_save


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

    def save_model(self, request, obj, form, change):
        endpoint_save(endpoint=obj, actor=request.user)

    def delete_model(self, request, obj):
        endpoint_delete(endpoint=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            self.delete_model(request, endpoint)
