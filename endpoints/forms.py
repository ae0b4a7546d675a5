"""The endpoint form of the settings page: Name, Connection (dropdown), Model, Task, Enabled."""

from django import forms

from connections.models import Connection

from .models import Endpoint


class ConnectionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, connection: Connection) -> str:
        return f"{connection.name} ({connection.get_provider_display()})"


class EndpointForm(forms.ModelForm):
    """The model checks the rest: name rules, and that the connection's provider supports the task."""

    connection = ConnectionChoiceField(
        # Only what the dropdown shows: listing connections never decrypts their secrets.
        queryset=Connection.objects.only("id", "name", "provider").order_by("name"),
        empty_label="Choose a connection",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "connection", "model", "task", "enabled"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            "model": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        }
