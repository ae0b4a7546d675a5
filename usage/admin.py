from django.contrib import admin

from .models import Price, UsageRecord


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """Prices per destination: the Usage tab's and the API's cost comes from these (calls written after a change)."""

    list_display = ["connection", "model", "input_per_million", "output_per_million"]
    list_select_related = ["connection"]
    search_fields = ["model", "connection__name"]
    fields = ["connection", "model", "input_per_million", "output_per_million"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        # The connection's name only: the choice list never loads anyone's secrets.
        form.base_fields["connection"].queryset = form.base_fields["connection"].queryset.only("id", "name")
        return form


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The calls as recorded, read-only (the writer thread is their only author)."""

    list_display = ["at", "endpoint_id", "connection_id", "token_id", "model", "status", "error", "latency_ms",
                    "prompt_tokens", "completion_tokens"]
    list_filter = ["status", "stream", "provider"]
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
