"""The LLM Connections tab of the settings page, each connection's history and the audit log.

Writes go through `connection_save`/`connection_delete` so every change is audited; the form and the
registry decide what is valid. Pages never read a secret: they show masks (or `cannot be decrypted`).
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.views import View
from django.views.generic import CreateView, DeleteView, ListView, TemplateView, UpdateView
from django.views.generic.detail import SingleObjectMixin

from audit.models import AuditEntry
from core.names import could_name_something
from core.ui import PAGE_SIZE, SettingsPageMixin, safe_next
from teams.forms import team_filter_context
from usage.summary import with_last_day_of_usage

from .editing import RowLockedForEdit
from .forms import ConnectionForm, ConnectionPageForm, secret_field_name, verify_requested
from .models import Connection, Environment, Rotation, each_endpoint_once
from .services import (
    ConnectionInUse,
    CredentialsNotVerified,
    connection_delete,
    connection_save,
    connection_test,
    connection_test_unsaved,
    connection_verify,
    credentials_of,
)


def endpoints_of(connection: Connection) -> QuerySet:
    """The endpoints (enabled or not) that keep a connection from being deleted."""
    return connection.endpoints.order_by("name").only("id", "name", "enabled").distinct()


class ConnectionListView(SettingsPageMixin, ListView):
    permission_required = "connections.view_connection"
    template_name = "connections/connection_list.html"
    context_object_name = "connections"
    paginate_by = PAGE_SIZE
    # One query for the page of connections, one for all their endpoints, one for their usage, however many rows.
    queryset = Connection.objects.order_by("name").select_related("team").prefetch_related(each_endpoint_once())
    rotation_filters = (Rotation.DUE_SOON, Rotation.OVERDUE)

    def get_queryset(self) -> QuerySet[Connection]:
        queryset = super().get_queryset().visible_to(self.request.user)
        self.filters = {}
        team = self.request.GET.get("team", "")
        if team and could_name_something(team):
            self.filters["team"] = team
            queryset = queryset.of_team(team)
        environment = self.request.GET.get("environment", "")
        if environment in Environment.values:
            self.filters["environment"] = environment
            queryset = queryset.filter(environment=environment)
        rotation = self.request.GET.get("rotation", "")
        if rotation in self.rotation_filters:
            self.filters["rotation"] = rotation
            queryset = queryset.rotation(rotation)
        return queryset

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        # A connection's last use is its own last_used_at, written by the gateway.
        context["connections"] = with_last_day_of_usage("connection", context["connections"], last_used=False)
        return {
            **context,
            "filters": self.filters,
            "filter_query": urlencode(self.filters),
            "rotation_choices": [
                (choice.value, choice.label, urlencode({**self.filters, "rotation": choice.value}))
                for choice in self.rotation_filters
            ],
            "rotation_all": urlencode({k: v for k, v in self.filters.items() if k != "rotation"}),
            "environment_choices": [
                (value, label, urlencode({**self.filters, "environment": value})) for value, label in Environment.choices
            ],
            "environment_all": urlencode({k: v for k, v in self.filters.items() if k != "environment"}),
            **team_filter_context(self.request.user, self.filters),
            "key_max_age_days": settings.KEY_MAX_AGE_DAYS,
        }


# Test on the form spends a key, as the list's Test does; on the create form it also needs the right to create.
TYPED_TEST_PERMISSIONS = {
    "create": ("connections.add_connection", "connections.change_connection"),
    "edit": ("connections.change_connection",),
}
CHANGED_WHILE_VERIFYING = (
    "Not saved: the stored connection changed while the provider was asked about its credentials. "
    "Check the form and save again."
)


class ConnectionFormMixin:
    model = Connection
    form_class = ConnectionPageForm
    template_name = "connections/connection_form.html"
    success_url = reverse_lazy("connections:list")
    verified: str | None = None  # what the provider accepted, when Save was asked to verify first

    def get_context_data(self, **kwargs) -> dict:
        """Where the form saves and tests (explicit: a Test's answer is served at the test URL)."""
        name = self.kwargs.get("name")
        args = [name] if name else []
        kind = "edit" if name else "create"
        return {
            **super().get_context_data(**kwargs),
            "save_url": reverse(f"connections:{kind}", args=args),
            "test_url": reverse(f"connections:{kind}_test", args=args),
            "may_test": self.request.user.has_perms(TYPED_TEST_PERMISSIONS[kind]),
        }

    def posted_form(self) -> ConnectionPageForm:
        """The form as posted, over the connection as stored now (read without a lock), validated."""
        if self.kwargs.get("name"):
            with self.row_unlocked():
                self.object = self.get_object()
        else:
            self.object = None
        form = self.get_form()
        form.is_valid()
        return form

    def refuse_unverified(self, form: ConnectionPageForm) -> HttpResponse | None:
        """When "Verify credentials" is ticked, ask the provider about the valid form's credentials; a refusal
        re-renders the form with the provider's verdict (nothing saved, nothing audited). No transaction may be
        open: a row lock is never held over a provider call."""
        if not form.cleaned_data.get("verify_credentials"):
            return None
        try:
            self.verified = connection_verify(connection=form.instance)
        except CredentialsNotVerified as refusal:
            form.add_error(None, str(refusal))
            return self.form_invalid(form)
        return None

    def saves_what_was_verified(self, form: ConnectionPageForm) -> bool:
        """False (with a form error) when the stored row changed between the provider's answer and the save."""
        if self.verified is None or credentials_of(form.instance) == self.verified:
            return True
        form.add_error(None, CHANGED_WHILE_VERIFYING)
        return False

    def get_queryset(self) -> QuerySet[Connection]:
        return Connection.objects.visible_to(self.request.user).select_related("team")

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "user": self.request.user}


class ConnectionCreateView(SettingsPageMixin, ConnectionFormMixin, CreateView):
    permission_required = "connections.add_connection"

    def form_valid(self, form: ConnectionForm) -> HttpResponse:
        refused = self.refuse_unverified(form)
        if refused is not None:
            return refused
        connection = connection_save(connection=form.instance, actor=self.request.user)
        messages.success(self.request, f"Connection “{connection.name}” created.")
        return HttpResponseRedirect(self.success_url)


class ConnectionUpdateView(SettingsPageMixin, RowLockedForEdit, ConnectionFormMixin, UpdateView):
    permission_required = "connections.change_connection"
    slug_field = slug_url_kwarg = "name"

    def post(self, request, *args, **kwargs) -> HttpResponse:
        """Read (locked), validate and save in one transaction, so a concurrent edit is never overwritten."""
        if verify_requested(request.POST):
            # The provider is asked first, outside the transaction; the save then checks it saves just that.
            form = self.posted_form()
            refused = self.refuse_unverified(form) if form.is_valid() else self.form_invalid(form)
            if refused is not None:
                return refused
        with transaction.atomic():
            return super().post(request, *args, **kwargs)

    def form_valid(self, form: ConnectionForm) -> HttpResponse:
        if not self.saves_what_was_verified(form):
            return self.form_invalid(form)
        changed = form.instance.changed_fields()
        connection = connection_save(connection=form.instance, actor=self.request.user)
        if not changed:
            messages.info(self.request, f"Nothing changed in “{connection.name}”.")
        elif all(name.startswith("secrets.") for name in changed):
            count = connection.endpoints.distinct().count()
            messages.success(
                self.request,
                f"Credentials of “{connection.name}” updated: its {count} endpoint(s) use them from the next call.",
            )
        else:
            messages.success(self.request, f"Connection “{connection.name}” saved.")
        return HttpResponseRedirect(self.success_url)


class TypedCredentialsTestMixin:
    """Test on the connection form: asks the provider about the credentials as typed, saving nothing.

    The form's values (on edit, over the stored connection: a blank secret is the stored one, as for Save) pass
    the checks of a save; errors of fields a Test does not read are left out. Without JavaScript the page comes
    back with the verdict (secret inputs empty, as always); the form's script gets the verdict alone.
    """

    http_method_names = ["post"]
    locks_row = False  # nothing is written: the row is read without a lock, the provider asked without one
    verdict_template_name = "connections/_typed_test_result.html"

    def post(self, request, *args, **kwargs) -> HttpResponse:
        form = self.posted_form()
        check = connection_test_unsaved(connection=form.instance) if form.keep_only_credential_errors() else None
        context = self.get_context_data(form=form, typed_test=check, typed_test_done=True)
        if request.headers.get("X-Requested-With") == "fetch":
            # The script keeps what was typed in the inputs: only the verdict goes back.
            return TemplateResponse(request, self.verdict_template_name, context)
        # The page comes back with empty secret inputs (a key is never sent back): the verdict says so.
        context["secrets_typed"] = any(form.data.get(secret_field_name(spec.name)) for spec in form.method.secret_fields)
        return self.render_to_response(context)


class ConnectionCreateTestView(TypedCredentialsTestMixin, ConnectionCreateView):
    permission_required = TYPED_TEST_PERMISSIONS["create"]


class ConnectionUpdateTestView(TypedCredentialsTestMixin, ConnectionUpdateView):
    permission_required = TYPED_TEST_PERMISSIONS["edit"]


class MethodFieldsView(SettingsPageMixin, TemplateView):
    """The auth method's fields as an HTML fragment, fetched by the form's script when Provider or method changes.

    `?provider=&auth_method=` choose the fields; `&connection=<name>` renders them for that stored connection
    (masks as placeholders, stored config) when its provider and method are the ones asked for.
    """

    template_name = "connections/_method_fields.html"

    def has_permission(self) -> bool:
        user = self.request.user
        return user.has_perm("connections.add_connection") or user.has_perm("connections.change_connection")

    def get_context_data(self, **kwargs) -> dict:
        name = self.request.GET.get("connection")
        if name and not self.request.user.has_perm("connections.change_connection"):
            raise PermissionDenied  # the stored connection's masks and config are for those who may edit it
        if name and not could_name_something(name):
            raise Http404
        stored = get_object_or_404(Connection.objects.visible_to(self.request.user), name=name) if name else None
        provider, method = ConnectionForm.selection_for(self.request.GET, stored or Connection())
        keeps_stored = stored is not None and (stored.provider, stored.auth_method) == (provider.id, method.id)
        instance = stored if keeps_stored else Connection(provider=provider.id, auth_method=method.id)
        return {**super().get_context_data(**kwargs), "form": ConnectionForm(instance=instance)}


class ConnectionDeleteView(SettingsPageMixin, DeleteView):
    """A confirmation page that warns about, lists and refuses while any endpoint (enabled or not) uses it."""

    permission_required = "connections.delete_connection"
    model = Connection
    slug_field = slug_url_kwarg = "name"
    template_name = "connections/connection_confirm_delete.html"
    success_url = reverse_lazy("connections:list")

    def get_queryset(self) -> QuerySet[Connection]:
        return Connection.objects.visible_to(self.request.user)

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), "dependent_endpoints": list(endpoints_of(self.object))}

    def form_valid(self, form) -> HttpResponse:
        name = self.object.name
        try:
            connection_delete(connection=self.object, actor=self.request.user)
        except ConnectionInUse as refusal:
            messages.error(
                self.request,
                f"“{name}” was not deleted: {len(refusal.endpoint_names)} endpoint(s) still use it.",
            )
            return self.render_to_response(self.get_context_data(), status=409)
        messages.success(self.request, f"Connection “{name}” deleted.")
        return HttpResponseRedirect(self.success_url)


class ConnectionTestView(SettingsPageMixin, SingleObjectMixin, View):
    """The list's Test button: call the provider with the stored credentials and say what it answered.

    It spends the stored key and tells whether it works, so it is for those who may change the connection.
    """

    permission_required = "connections.change_connection"
    model = Connection
    slug_field = slug_url_kwarg = "name"
    http_method_names = ["post"]

    def get_queryset(self) -> QuerySet[Connection]:
        return Connection.objects.visible_to(self.request.user)

    def post(self, request, *args, **kwargs) -> HttpResponse:
        connection = self.get_object()
        result = connection_test(connection=connection)
        if result.ok:
            messages.success(request, f"Test of “{connection.name}”: {result.message}")
        else:
            status = f" (provider status {result.status})" if result.status else ""
            messages.error(request, f"Test of “{connection.name}” failed{status}: {result.message}")
        return HttpResponseRedirect(safe_next(request) or reverse("connections:list"))


class ConnectionHistoryView(SettingsPageMixin, ListView):
    """What was done to one connection, by whom and when (field names, never values)."""

    permission_required = "connections.view_connection"
    template_name = "connections/connection_history.html"
    context_object_name = "entries"
    paginate_by = PAGE_SIZE

    def get_queryset(self) -> QuerySet[AuditEntry]:
        self.connection = get_object_or_404(Connection.objects.visible_to(self.request.user).only("id", "name"),
                                            name=self.kwargs["name"])
        return self.connection.audit_entries()

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), "connection": self.connection}
