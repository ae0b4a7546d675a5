from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count

from providers import catalogue
from teams.models import Team

from .editing import EDIT_METHODS
from .forms import ConnectionForm
from .models import Connection
from .services import ConnectionInUse, connection_delete, connection_save


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Add and change go through ConnectionForm (masks, blank keeps), saves and deletes through services."""

    form = ConnectionForm
    list_display = ["name", "team", "provider_label", "auth_method_label", "environment", "credentials", "endpoint_count",
                    "secrets_updated_at", "created_at"]
    list_filter = [("team", admin.RelatedOnlyFieldListFilter), "provider", "environment"]
    search_fields = ["name"]  # never the encrypted column: its lookups cannot match anyway
    readonly_fields = ["credentials", "secrets_updated_at", "last_used_at", "created_at", "updated_at",
                       "created_by", "updated_by"]

    def get_queryset(self, request):
        """Only the connections of the user's teams (every one for a superuser): the changelist, the change view,
        and the connections an endpoint's destinations may choose (autocomplete) all read this."""
        return (super().get_queryset(request).visible_to(request.user).select_related("team")
                .annotate(endpoint_count=Count("endpoints", distinct=True)))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "team":
            kwargs["queryset"] = Team.objects.of(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_object(self, request, object_id, from_field=None):
        """On a save or delete, the row read locked as the settings page and the API read it (connections/editing.py).

        The admin runs these views in a transaction, so a concurrent edit waits for this one and then starts
        from its result instead of either writing back the other's stale key. (Not through get_queryset: the
        endpoint count's GROUP BY cannot be locked.)
        """
        if request.method not in EDIT_METHODS:
            return super().get_object(request, object_id, from_field)
        field = Connection._meta.pk if from_field is None else Connection._meta.get_field(from_field)
        try:
            return Connection.objects.visible_to(request.user).select_for_update(of=("self",)).get(
                **{field.name: field.to_python(object_id)})
        except (Connection.DoesNotExist, ValidationError, ValueError):
            return None

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The secret and config inputs are added per auth method by the form itself, not declared here.
        kwargs["fields"] = ConnectionForm.Meta.fields
        form = super().get_form(request, obj, change, **kwargs)

        class ForThisUser(form):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, user=request.user, **kwargs)

        return ForThisUser

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Staff who may only view: every field is shown read-only, so what is shown are masks and labels.
            return [
                (None, {"fields": ["name", "team", "provider", "auth_method_label", "credentials", "configuration",
                                   "environment", "description", "key_max_age_days"]}),
                ("Record", {"fields": [name for name in self.readonly_fields if name != "credentials"]}),
            ]
        data = request.POST if request.method == "POST" else None
        provider, method = ConnectionForm.selection_for(data, obj or Connection())
        fieldsets = [
            (None, {"fields": ["name", "team", "provider", "auth_method", "selection"]}),
            (f"{provider.label} · {method.label}", {"fields": ConnectionForm.method_field_names(method)}),
            (None, {"fields": ["environment", "description", "key_max_age_days"]}),
        ]
        if obj is not None:
            fieldsets.append(("Record", {"fields": self.readonly_fields}))
        return fieldsets

    @admin.display(description="Provider", ordering="provider")
    def provider_label(self, obj: Connection) -> str:
        return obj.get_provider_display()

    @admin.display(description="Auth method")
    def auth_method_label(self, obj: Connection) -> str:
        return catalogue.auth_method_label(obj.provider, obj.auth_method)

    @admin.display(description="Credentials")
    def credentials(self, obj: Connection) -> str:
        return obj.credentials_display

    @admin.display(description="Configuration")
    def configuration(self, obj: Connection) -> str:
        labels = catalogue.FIELD_LABELS
        return ", ".join(f"{labels.get(name, name)}: {value}" for name, value in obj.config.items()) or "-"

    @admin.display(description="Endpoints", ordering="endpoint_count")
    def endpoint_count(self, obj: Connection) -> int:
        return obj.endpoint_count

    def save_model(self, request, obj, form, change):
        connection_save(connection=obj, actor=request.user)

    def delete_model(self, request, obj):
        try:
            connection_delete(connection=obj, actor=request.user)
        except ConnectionInUse as error:
            messages.error(request, str(error))

    def delete_queryset(self, request, queryset):
        for connection in queryset:
            self.delete_model(request, connection)
