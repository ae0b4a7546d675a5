from django.contrib import admin
from django.db.models import Prefetch

from .models import ApiToken
from .services import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-only apart from revoking: shows the display prefix, never a hash or a token."""

    list_display = ["prefix", "user", "scope", "status", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["scope", "revoked_at", "expires_at"]
    list_select_related = ["user"]
    search_fields = ["prefix", "user__username"]
    fields = ["prefix", "user", "scope", "limited_to_endpoints", "requests_per_minute", "token_budget", "budget_period", "status", "created_at", "last_used_at", "expires_at",
              "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="Status")
    def status(self, obj: ApiToken) -> str:
        return obj.status

    @admin.display(description="Endpoints")
    def limited_to_endpoints(self, obj: ApiToken) -> str:
        """The endpoints the token is limited to that the viewer may see (another team's are not named)."""
        if not obj.endpoints.exists():
            return "any endpoint"
        return ", ".join(endpoint.name for endpoint in obj.visible_endpoints) or "only endpoints of other teams"

    def get_queryset(self, request):
        endpoints = ApiToken._meta.get_field("endpoints").related_model.objects  # the app beside this one
        return super().get_queryset(request).prefetch_related(Prefetch(
            "endpoints", queryset=endpoints.visible_to(request.user).order_by("name").only("id", "name"),
            to_attr="visible_endpoints"))

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset.select_related("user"):
            token_revoke(token=token, actor=request.user)
        self.message_user(request, "Revoked the selected tokens.")

    def has_add_permission(self, request):
        return False  # tokens are created where they can be shown once: the Tokens page or the command

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so the record stays
