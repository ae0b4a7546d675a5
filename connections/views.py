"""The LLM Connections tab of the settings page, each connection's history and the audit log.

Writes go through `connection_save`/`connection_delete` so every change is audited; the form and the
registry decide what is valid. Pages never read a secret: they show masks (or `cannot be decrypted`).
"""

import unicodedata
from functools import lru_cache
from typing import NamedTuple
from html import escape  # Django's escape() without its lazy-string wrapper: the same text, a third of the cost
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import get_script_prefix, get_urlconf, reverse, reverse_lazy
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.views import View
from django.views.generic import CreateView, DeleteView, ListView, TemplateView, UpdateView
from django.views.generic.detail import SingleObjectMixin
from encrypted_model_fields import fields as encrypted_fields

from audit.models import AuditEntry
from core.names import could_name_something
from core.rows import ForIds, Pages
from core.ui import (
    PAGE_SIZE, CompiledPagesMixin, RememberedPageMixin, SettingsPageMixin, name_url, name_urls, page_constants,
    safe_next, time_html, usage_cells, usage_url,
)
from providers import catalogue
from teams.forms import team_filter_context
from usage.summary import last_day_by

from .editing import RowLockedForEdit
from .forms import ConnectionForm, ConnectionPageForm, secret_field_name, verify_requested
from .models import (
    STORED_SECRETS, Connection, Environment, Rotation, credentials_line, key_rotation, masks_of_stored,
)
from .secrets import UNDECRYPTABLE_LABEL
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


def listed(user, *, shape: tuple = (), team: str | None = None, environment: str | None = None,
           rotation: str | None = None) -> QuerySet:
    """The connections of the list page `user` sees, filtered as asked, in name order."""
    queryset = Connection.objects.order_by("name").visible_to(user)
    if team is not None:
        queryset = queryset.of_team(team)
    if environment is not None:
        queryset = queryset.filter(environment=environment)
    if rotation is not None:
        queryset = queryset.rotation(rotation)
    return queryset


def listed_values(queryset: QuerySet) -> QuerySet:
    """What `connection_rows()` renders a connection from."""
    return queryset.values(
        "id", "name", "description", "environment", "provider", "auth_method", "secrets_updated_at", "created_at",
        "last_used_at", "key_max_age_days", "team__name", stored_secrets=STORED_SECRETS,
    )


class ConnectionListView(SettingsPageMixin, CompiledPagesMixin, RememberedPageMixin, ListView):
    permission_required = "connections.view_connection"
    template_name = "connections/connection_list.html"
    context_object_name = "connections"
    paginate_by = PAGE_SIZE
    # One query for the page of connections and their number, one for all their endpoints, one for their usage,
    # however many rows.
    rotation_filters = (Rotation.DUE_SOON, Rotation.OVERDUE)
    pages = Pages(listed, listed_values)
    model = Connection

    def get_queryset(self) -> QuerySet:
        """The page's connections the user may see, filtered as the request asks, as values: `connection_rows()`
        renders them."""
        self.filters = {}
        team = self.request.GET.get("team", "")
        if team and could_name_something(team):
            self.filters["team"] = team
        environment = self.request.GET.get("environment", "")
        if environment in Environment.values:
            self.filters["environment"] = environment
        rotation = self.request.GET.get("rotation", "")
        if rotation in self.rotation_filters:
            self.filters["rotation"] = rotation
        return self.lazily(lambda: listed_values(listed(self.request.user, **self.filters)))

    def compiled_filters(self) -> dict | None:
        # The rotation filter compares with times worked out from now: the ORM builds it.
        return None if "rotation" in self.filters else self.filters

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        may_test = self.request.user.has_perm("connections.change_connection")
        return {
            **context,
            "rows": connection_rows(context["object_list"], request=self.request, may_test=may_test),
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


# One row of the LLM Connections table, as the template language wrote it (the page's text around `{{ rows }}`
# is the template's). Values are escaped before they go in; tests hold this equal to the template it replaced.
CONNECTION_ROW = """
    <tr>
      <th scope="row" class="name">{name} <span class="badge env-badge env-{environment}">{environment_label}</span> <span class="badge team-badge" title="Team">{team}</span>{description}</th>
      <td>{provider}</td>
      <td>{auth_method}</td>
      <td>{credentials}</td>
      <td class="endpoint-names">
        {endpoints}
      </td>
      <td class="number">{calls}</td>
      <td class="number">{errors}</td>
      <td>{last_used_at}</td>
      <td>{secrets_updated_at}<span class="key-age">{key_age}</span></td>
      <td>{created_at}</td>
      <td class="row-actions">
        <a href="{edit_url}" aria-label="Edit {name}">Edit</a>
        <a href="{delete_url}" aria-label="Delete {name}" class="danger-link">Delete</a>
        <a href="{history_url}" aria-label="History of {name}">History</a>
        """
ROW_END = """
      </td>
    </tr>
    """
TEST_FORM = """
        <form method="post" action="{test_url}" class="inline-form">
          <input type="hidden" name="csrfmiddlewaretoken" value="{csrf_token}">
          <input type="hidden" name="next" value="{next}">
          <button type="submit" class="button button-small" aria-label="Test {name}">Test</button>
        </form>
        """
UNDECRYPTABLE_TITLE = ("No configured FIELD_ENCRYPTION_KEY decrypts it: edit to re-enter the secret, or restore "
                       "the key.")


def connection_rows(rows: list[dict], *, request, may_test: bool) -> str:
    """The table body for a page of connections (`ConnectionListView.queryset` rows), as safe HTML.

    Through the template engine the 50 rows were most of the page's time: a variable lookup, an escape and
    an include at a time. Here each row is one string format, remembered by what makes it (`connection_row()`):
    a list shows the same rows again and again. Only the Test form's token and return path are per request.
    """
    ids = [row["id"] for row in rows]
    endpoints = endpoint_links(ids)
    usage = last_day_by("connection", ids, last_used=False)  # the last use is the connection's own last_used_at
    page = RowPage(*page_constants(), usage_url(request), encrypted_fields.CRYPTER)
    zone, now = page.zone, timezone.now()
    csrf_token, next_path = (escape(get_token(request)), escape(request.get_full_path())) if may_test else ("", "")
    html = []
    for row in rows:
        used = usage.get(row["id"]) or NO_USAGE
        head, test_url, name = connection_row(page, tuple(row.items()), endpoints.get(row["id"]), used.get("calls"),
                                              used.get("errors"), key_age_html(row, now, zone))
        html.append(head)
        if may_test:
            html.append(TEST_FORM.format(test_url=test_url, csrf_token=csrf_token, next=next_path, name=name))
        html.append(ROW_END)
    return mark_safe("".join(html))


NO_USAGE: dict = {}


class RowPage(NamedTuple):
    """What a page's rows depend on besides their own values (`core.ui.page_constants()`, then the Usage link
    and the keys that decrypt the masks)."""

    zone: object
    language: str | None
    script_prefix: str
    urlconf: str | None
    usage_url: str | None
    crypter: object


@lru_cache(maxsize=2048)  # forty pages of rows
def connection_row(page: RowPage, items: tuple, endpoints: str | None, calls: int | None, errors: int | None,
                   key_age: str) -> tuple[str, str, str]:
    """One row's HTML up to its Test form, the form's escaped URL and the escaped name: a function of its
    arguments alone (the row's values as `items`, its endpoints' links, its usage, its key's age)."""
    row = dict(items)
    providers = dict(Connection._meta.get_field("provider").flatchoices)
    environments = dict(Connection._meta.get_field("environment").flatchoices)
    zone = page.zone
    name = escape(row["name"])
    decryptable, masks = masks_of_stored(row["stored_secrets"], row["provider"], row["auth_method"])
    credentials = escape(credentials_line(masks) if decryptable else UNDECRYPTABLE_LABEL)
    calls, errors = usage_cells("connection", page.usage_url)(row["id"], name, {"calls": calls, "errors": errors})
    head = CONNECTION_ROW.format(
        name=name,
        environment=escape(row["environment"]),
        environment_label=escape(str(environments.get(row["environment"], row["environment"]))),
        team=escape(row["team__name"]),
        description=(f'<span class="row-description">{escape(truncated(row["description"], 80))}</span>'
                     if row["description"] else ""),
        provider=escape(str(providers.get(row["provider"], row["provider"]))),
        auth_method=escape(str(catalogue.auth_method_label(row["provider"], row["auth_method"]))),
        credentials=(f'<code class="mask">{credentials}</code>' if decryptable else
                     f'<span class="badge badge-danger" title="{UNDECRYPTABLE_TITLE}">{credentials}</span>'),
        endpoints=endpoints if endpoints is not None else '<span class="muted">none</span>',
        calls=calls,
        errors=errors,
        last_used_at=time_html(row["last_used_at"], zone),
        secrets_updated_at=time_html(row["secrets_updated_at"], zone),
        key_age=key_age,
        created_at=time_html(row["created_at"], zone),
        edit_url=escape(name_url("connections:edit", row["name"])),
        delete_url=escape(name_url("connections:delete", row["name"])),
        history_url=escape(name_url("connections:history", row["name"])),
    )
    return head, escape(name_url("connections:test", row["name"])), name


def truncated(text: str, length: int) -> str:
    """`Truncator(text).chars(length)`; a text short enough is only normalized, as the Truncator normalizes it
    (most descriptions are short, and the Truncator's walk through each character was a tenth of the rows)."""
    normalized = unicodedata.normalize("NFC", text)
    return normalized if len(normalized) <= length else Truncator(text).chars(length)


def key_age_html(row: dict, now, zone) -> str:
    """The key's age under Last updated, with a Due soon or Overdue badge giving the due day (in `zone`)."""
    age, due, status = key_rotation(row["auth_method"], row["secrets_updated_at"], row["created_at"],
                                    row["key_max_age_days"], now)
    if status == Rotation.NO_KEY:
        return '<span class="muted">no key</span>'
    if status == Rotation.OVERDUE or status == Rotation.DUE_SOON:
        due = due.astimezone(zone) if timezone.is_aware(due) else due
        day = f"{due.year:04d}-{due.month:02d}-{due.day:02d}"
        badge = (f' <span class="badge badge-danger" title="Due {day}: rotate the key">Overdue</span>'
                 if status == Rotation.OVERDUE else
                 f' <span class="badge badge-warning" title="Due {day}">Due soon</span>')
        return f"{age} d old{badge}"
    return f"{age} d old"


def endpoints_of_connections(ids: list[int]) -> QuerySet:
    """The endpoints' destinations (the app above this one) using some connections: connection id, endpoint name
    and whether it is enabled, each endpoint once a connection, in name order.

    The endpoint's columns are read by its key for each destination (a subquery each) rather than by a join:
    PostgreSQL joins by hashing the whole endpoints table, most of the page's database time at 10,000 endpoints.
    """
    destination = Connection.endpoints.through
    endpoints = destination._meta.get_field("endpoint").related_model.objects
    endpoint = endpoints.filter(pk=OuterRef("endpoint_id")).order_by()
    return (destination.objects.filter(connection_id__in=ids)
            .annotate(endpoint_name=Subquery(endpoint.values("name")),
                      endpoint_enabled=Subquery(endpoint.values("enabled")))
            .values_list("connection_id", "endpoint_name", "endpoint_enabled")
            .order_by("endpoint_name").distinct())


ENDPOINTS_OF = ForIds(endpoints_of_connections)


def endpoint_links(connection_ids: list[int]) -> dict[int, str]:
    """Connection id → its endpoints as links (disabled ones marked), in name order, each endpoint once although
    several of its destinations may use the connection: one query for the page."""
    endpoints: dict[int, list[tuple[str, bool]]] = {}
    _, rows = ENDPOINTS_OF.fetchall(Connection.objects.db, connection_ids)
    for connection_id, name, enabled in rows:
        endpoints.setdefault(connection_id, []).append((name, enabled))
    prefix, urlconf = get_script_prefix(), get_urlconf()
    return {key: links_html(tuple(items), prefix, urlconf) for key, items in endpoints.items()}


@lru_cache(maxsize=4096)
def links_html(endpoints: tuple[tuple[str, bool], ...], script_prefix: str, urlconf: str | None) -> str:
    """The links of one connection's endpoints (name, enabled), for the script prefix and URLconf they are under."""
    edit_url = name_urls("endpoints:edit")
    links = []
    for name, enabled in endpoints:
        url = escape(edit_url(name))
        links.append(f'<a href="{url}">{escape(name)}</a>' if enabled else
                     f'<a href="{url}" class="disabled-endpoint">{escape(name)}</a> <span class="muted">(disabled)</span>')
    return ("".join(f'<span class="endpoint-item">{link},</span> ' for link in links[:-1])
            + f'<span class="endpoint-item">{links[-1]}</span> ')


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
