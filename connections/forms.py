"""The connection form, built from the catalogue: one password input per secret field, the auth method's
config fields, and a re-render (never a save) when Provider or Authentication method changed."""

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from providers import catalogue
from teams.forms import TeamChoiceMixin

from .models import Connection, Environment
from .secrets import UNDECRYPTABLE_LABEL

SELECTION_FIELD = "selection"
VERIFY_FIELD = "verify_credentials"


def secret_field_name(name: str) -> str:
    return f"secrets.{name}"


def config_field_name(name: str) -> str:
    return f"config.{name}"


class ConnectionForm(TeamChoiceMixin, forms.ModelForm):
    """Create and edit a connection; used by the admin and the settings page.

    Secret inputs never re-render a stored value: they are empty with the mask as placeholder, and an
    empty input keeps the stored secret. The hidden `selection` field remembers which provider and auth
    method the fields were rendered for; when the user changed either, the form re-renders the right fields
    instead of saving (so it works without JavaScript).
    """

    auth_method = forms.ChoiceField(label="Authentication method")
    selection = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Connection
        fields = ["name", "team", "provider", "auth_method", "environment", "description", "key_max_age_days"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_team_choices(user)
        submitted = (
            {name: self.data.get(self.add_prefix(name)) for name in ("provider", "auth_method")} if self.is_bound else None
        )
        self.provider, self.method = self.selection_for(submitted, self.instance)
        if "provider" not in self.fields:
            return  # built without inputs, to show a connection read-only (the admin, to staff who may only view)
        self.fields["provider"].choices = catalogue.provider_choices()
        self.fields["provider"].initial = self.provider.id
        self.fields["name"].widget.attrs.update({"autocomplete": "off", "spellcheck": "false"})
        if "environment" in self.fields:
            self.fields["environment"].required = False  # a form posted without it (a script) keeps what is stored
        if "key_max_age_days" in self.fields:
            self.fields["key_max_age_days"].help_text = (
                f"Rotate the key at least this often. Empty: the server's default, {settings.KEY_MAX_AGE_DAYS} days."
            )
        auth_field = self.fields["auth_method"]
        auth_field.choices = [(m.id, m.label) for m in self.provider.auth_methods]
        auth_field.initial = self.method.id
        if len(self.provider.auth_methods) == 1:
            auth_field.widget = forms.HiddenInput()
        self.fields[SELECTION_FIELD].initial = self.selection_key
        submitted_selection = self.data.get(self.add_prefix(SELECTION_FIELD), "") if self.is_bound else ""
        # A submit without the hidden field (a script, a test) is taken as meant for the current selection.
        self.selection_changed = submitted_selection not in ("", self.selection_key)
        if self.is_bound:
            # The hidden field must describe the fields rendered now, not the ones that were submitted.
            self.data = self.data.copy()
            self.data[self.add_prefix(SELECTION_FIELD)] = self.selection_key
            self.data[self.add_prefix("provider")] = self.provider.id
            self.data[self.add_prefix("auth_method")] = self.method.id
        self._add_method_fields()

    @classmethod
    def selection_for(cls, data, instance: Connection) -> tuple[catalogue.Provider, catalogue.AuthMethod]:
        """The provider and auth method the fields are for: as submitted, else as stored, else the first."""
        provider = catalogue.PROVIDERS.get((data or {}).get("provider") or instance.provider) or catalogue.PROVIDER_LIST[0]
        method_id = (data or {}).get("auth_method") or (instance.auth_method if provider.id == instance.provider else "")
        return provider, provider.auth_method(method_id) or provider.auth_methods[0]

    @classmethod
    def method_field_names(cls, method: catalogue.AuthMethod) -> list[str]:
        return [secret_field_name(f.name) for f in method.secret_fields] + [
            config_field_name(f.name) for f in method.config_fields
        ]

    @property
    def selection_key(self) -> str:
        return f"{self.provider.id}/{self.method.id}"

    def _add_method_fields(self) -> None:
        keeps_stored = self.instance.pk is not None and self.instance.provider == self.provider.id and (
            self.instance.auth_method == self.method.id
        )
        masks = self.instance.masked_secrets() if keeps_stored else {}
        for spec in self.method.secret_fields:
            placeholder = masks.get(spec.name, "")
            help_text = spec.help_text
            if placeholder == UNDECRYPTABLE_LABEL:
                help_text = "The stored value cannot be decrypted: re-enter it, or check the encryption key."
            elif placeholder:
                help_text = "Leave empty to keep the stored value."
            field = forms.CharField(
                label=spec.label,
                required=False,  # the model says what is missing, once, with the field's name
                strip=True,
                help_text=help_text,
                widget=forms.PasswordInput(
                    render_value=False,
                    attrs={"autocomplete": "new-password", "placeholder": placeholder, "spellcheck": "false"},
                ),
            )
            field.registry_required = spec.required and not placeholder
            self.fields[secret_field_name(spec.name)] = field
        for spec in self.method.config_fields:
            field = forms.CharField(
                label=spec.label,
                required=False,
                strip=True,
                help_text=spec.help_text,
                initial=self.instance.config.get(spec.name, "") if keeps_stored else "",
                widget=forms.TextInput(attrs={"placeholder": spec.default, "spellcheck": "false"}),
            )
            field.registry_required = spec.required
            self.fields[config_field_name(spec.name)] = field

    @property
    def method_fields(self) -> list[forms.BoundField]:
        """The secret and config inputs of the selected auth method, in registry order."""
        return [self[name] for name in self.method_field_names(self.method)]

    def _post_clean(self) -> None:
        # After a change of provider or method the new fields were never shown: calling them missing is noise.
        if self.selection_changed:
            return
        super()._post_clean()

    def clean_environment(self) -> str:
        return self.cleaned_data.get("environment") or self.instance.environment or Environment.PRODUCTION

    def clean(self):
        cleaned = super().clean()
        if self.selection_changed:
            raise ValidationError(
                f"The fields below are now those of {self.provider.label} · {self.method.label}: "
                "fill them in, then submit again.",
                code="selection_changed",
            )
        self.instance.provider = self.provider.id
        self.instance.auth_method = self.method.id
        self.instance.update_secrets(
            {f.name: cleaned.get(secret_field_name(f.name)) for f in self.method.secret_fields}
        )
        self.instance.config = {
            f.name: cleaned.get(config_field_name(f.name)) or "" for f in self.method.config_fields
        }
        return cleaned


class ConnectionPageForm(ConnectionForm):
    """The settings page's form: the connection, and whether Save asks the provider about the credentials first."""

    verify_credentials = forms.BooleanField(
        required=False,
        label="Verify credentials before saving",
        help_text="Save then asks the provider first, and saves nothing if it rejects the credentials or cannot "
                  "be reached.",
    )

    def keep_only_credential_errors(self) -> bool:
        """For a Test: drop the errors of fields a Test does not read (name, description…); True if none are left.

        What a Test reads (provider, auth method, secrets, config) passed the same checks as a save.
        """
        read = {NON_FIELD_ERRORS, "provider", "auth_method", *self.method_field_names(self.method)}
        for name in [name for name in self.errors if name not in read]:
            del self.errors[name]
        return not self.errors


def verify_requested(data) -> bool:
    """Whether a submitted form ticked "Verify credentials" (read before the form is built)."""
    return forms.CheckboxInput().value_from_datadict(data, {}, VERIFY_FIELD)
