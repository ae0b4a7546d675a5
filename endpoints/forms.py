"""The endpoint form of the settings page: Name, Connection (dropdown), Model, Task, Enabled."""

from django import forms

from connections.models import Connection
from core.limits import BudgetPeriod

from .models import Endpoint


class ConnectionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, connection: Connection) -> str:
        return f"{connection.name} ({connection.get_provider_display()})"


class EndpointForm(forms.ModelForm):
    """The model checks the rest: name rules, and that the connection's provider supports the task."""

    connection = ConnectionChoiceField(
        # Only what the dropdown shows: listing connections never decrypts their secrets.
        queryset=Connection.objects.only("id", "name", "provider", "environment").order_by("name"),
        empty_label="Choose a connection",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "connection", "model", "task", "enabled", "requests_per_minute", "token_budget",
                  "budget_period"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            "model": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["budget_period"].required = False  # a form posted without it (a script) keeps the default

    def clean_budget_period(self) -> str:
        return self.cleaned_data["budget_period"] or BudgetPeriod.MONTH
