from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.forms.models import BaseInlineFormSet

from connections.models import Connection
from teams.models import Team

from .forms import EndpointForm
from .models import Destination, Endpoint
from .services import endpoint_delete, endpoint_save


class DestinationAdminFormSet(BaseInlineFormSet):
    """The inline rows in their Position order, held to the rules a set of destinations keeps together."""

    def destinations(self) -> list[Destination]:
        kept = [form for form in self.forms if form.has_changed() or form.instance.pk]
        kept = [form for form in kept if not self._should_delete_form(form) and hasattr(form, "cleaned_data")]
        return [form.instance for form in sorted(kept, key=lambda form: form.instance.position or 0)]

    def clean(self) -> None:
        super().clean()
        if any(form.errors for form in self.forms):
            return
        try:
            self.instance.check_destinations(self.destinations())
        except ValidationError as error:
            raise ValidationError(error.message_dict["destinations"]) from None

    def validate_unique(self) -> None:
        """Duplicates are the model's to word (Endpoint.check_destinations)."""


class DestinationInline(admin.TabularInline):
    model = Destination
    formset = DestinationAdminFormSet
    fields = ["connection", "model", "role", "weight", "position", "cooling_until"]
    readonly_fields = ["cooling_until"]
    autocomplete_fields = ["connection"]
    extra = 1
    max_num = 10
    ordering = ["position"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "connection":  # the endpoint's rules then refuse a connection of another team
            kwargs["queryset"] = Connection.objects.visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "split", "task", "enabled", "updated_at"]
    list_filter = [("team", admin.RelatedOnlyFieldListFilter), "enabled", "task", "destinations__connection__provider"]
    search_fields = ["name", "destinations__model", "destinations__connection__name"]
    fields = ["name", "team", "task", "enabled", "fallback_on", "deadline_seconds", "allow_mixed_environments",
              *Endpoint.limit_fields]
    inlines = [DestinationInline]
    form = EndpointForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class ForThisUser(form):
            """The team among the user's own (their only one when left empty)."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, user=request.user, **kwargs)

        return ForThisUser

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "team":
            kwargs["queryset"] = Team.objects.of(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        """Only the endpoints of the user's teams (every one for a superuser)."""
        return super().get_queryset(request).visible_to(request.user).select_related("team").prefetch_related(Prefetch(
            "destinations", queryset=Destination.objects.select_related("connection").only(
                "endpoint_id", "role", "weight", "position", "model", "connection__name").order_by("position"),
        ))

    @admin.display(description="Destinations")
    def split(self, obj: Endpoint) -> str:
        return obj.split_text()

    def save_model(self, request, obj, form, change):
        """Saved with its destinations in save_related, in one service call and one audit entry."""

    def save_related(self, request, form, formsets, change):
        formset = next(f for f in formsets if isinstance(f, DestinationAdminFormSet))
        destinations = formset.destinations()
        endpoint_save(endpoint=form.instance, destinations=destinations, actor=request.user)
        # What the admin's history message reads of a saved formset: the rows were replaced as a whole.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = destinations, [], []

    def delete_model(self, request, obj):
        endpoint_delete(endpoint=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            self.delete_model(request, endpoint)
