"""The endpoint form of the settings page: the endpoint's fields, and its destinations as a formset
(connection, model, role, weight, order) whose joint rules the model checks."""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet, inlineformset_factory

from connections.models import Connection
from core.limits import BudgetPeriod
from teams.forms import TeamChoiceMixin

from .models import MAX_DESTINATIONS, Destination, Endpoint


class ConnectionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, connection: Connection) -> str:
        return f"{connection.name} ({connection.get_provider_display()})"


def connection_choices():
    # Only what the dropdown shows and the environment rule reads: listing connections never decrypts their secrets.
    return Connection.objects.only("id", "name", "provider", "environment").order_by("name")


class EndpointForm(TeamChoiceMixin, forms.ModelForm):
    """The model checks the rest: name rules, the deadline's range, the failures named, the limits' ranges."""

    class Meta:
        model = Endpoint
        fields = ["name", "team", "task", "enabled", "fallback_on", "deadline_seconds", "allow_mixed_environments",
                  "requests_per_minute", "token_budget", "budget_period"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_team_choices(user)
        self.fields["budget_period"].required = False  # a form posted without it (a script) keeps the default

    def clean_budget_period(self) -> str:
        return self.cleaned_data["budget_period"] or BudgetPeriod.MONTH


class DestinationForm(forms.ModelForm):
    connection = ConnectionChoiceField(queryset=connection_choices(), empty_label="Choose a connection")

    class Meta:
        model = Destination
        fields = ["connection", "model", "role", "weight"]
        widgets = {
            "model": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "gpt-4o-mini"}),
            "weight": forms.NumberInput(attrs={"min": 1, "max": 100, "class": "weight-input"}),
            "role": forms.Select(attrs={"class": "role-input"}),
        }

    def __init__(self, *args, connections=None, **kwargs):
        super().__init__(*args, **kwargs)
        if connections is not None:
            self.fields["connection"].queryset = connections


class BaseDestinationFormSet(BaseInlineFormSet):
    """Rows in the order given by their Order number (then as listed); blank extra rows are ignored."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queryset = self.queryset.select_related("connection").order_by("position") if self.instance.pk else self.queryset
        self.connection_options = None

    def add_fields(self, form, index) -> None:
        """Every row's dropdown shows the same connections: read once, not once per row."""
        super().add_fields(form, index)
        if self.connection_options is None:
            self.connection_options = list(form.fields["connection"].choices)
        form.fields["connection"].widget.choices = self.connection_options

    def destinations(self) -> list[Destination]:
        """The destinations as the cleaned rows leave them, in their Order (then as listed); not saved."""
        kept = [
            (index, form) for index, form in enumerate(self.forms)
            if (index < self.initial_form_count() or form.has_changed()) and not self._should_delete_form(form)
        ]

        def order(item):
            index, form = item
            value = form.cleaned_data.get("ORDER")
            return (value is None, value or 0, index)

        return [form.instance for _, form in sorted(kept, key=order)]

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


DestinationFormSet = inlineformset_factory(
    Endpoint, Destination, form=DestinationForm, formset=BaseDestinationFormSet,
    fields=["connection", "model", "role", "weight"], extra=1, can_delete=True, can_order=True,
    max_num=MAX_DESTINATIONS, validate_max=False, absolute_max=50,
)
