"""The Endpoints tab of the settings page: list, create, edit, delete."""

from functools import lru_cache
from html import escape  # Django's escape() without its lazy-string wrapper: the same text, a third of the cost

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.utils.safestring import mark_safe
from django.utils.translation import get_language
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from connections.models import Connection
from core.limits import limits_line
from core.names import could_name_something
from core.rows import ForIds, Pages
from core.ui import (
    PAGE_SIZE, CompiledPagesMixin, RememberedPageMixin, SettingsPageMixin, name_url, page_constants, time_html,
    usage_cells, usage_url,
)
from teams.forms import team_filter_context
from teams.models import Team
from usage.summary import last_day_by

from .forms import DestinationFormSet, EndpointForm, connection_choices
from .models import Destination, Endpoint, split_line
from .services import endpoint_delete, endpoint_save


def listed(user, *, shape: tuple = (), team: str | None = None) -> QuerySet:
    """The endpoints of the list page `user` sees, filtered as asked, in name order."""
    queryset = Endpoint.objects.order_by("name").visible_to(user)
    return queryset.of_team(team) if team is not None else queryset


def listed_values(queryset: QuerySet) -> QuerySet:
    """What `endpoint_rows()` renders an endpoint from."""
    return queryset.values("id", "name", "task", "enabled", "team__name", *Endpoint.limit_fields)


class EndpointListView(SettingsPageMixin, CompiledPagesMixin, RememberedPageMixin, ListView):
    permission_required = "endpoints.view_endpoint"
    template_name = "endpoints/endpoint_list.html"
    context_object_name = "endpoints"
    paginate_by = PAGE_SIZE
    # One query for the page of endpoints and their number, one for all their destinations, one for their usage,
    # however many rows.
    pages = Pages(listed, listed_values)
    model = Endpoint

    def get_queryset(self) -> QuerySet:
        """The page's endpoints the user may see, filtered as the request asks, as values: `endpoint_rows()`
        renders them."""
        self.filters = {}
        team = self.request.GET.get("team", "")
        if team and could_name_something(team):
            self.filters["team"] = team
        return self.lazily(lambda: listed_values(listed(self.request.user, **self.filters)))

    def compiled_filters(self) -> dict:
        return self.filters

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["rows"] = endpoint_rows(context["object_list"], request=self.request)
        return {**context, "filters": self.filters, **team_filter_context(self.request.user, self.filters)}


# One row of the Endpoints table, as the template language wrote it (the page's text around `{{ rows }}` is the
# template's). Values are escaped before they go in; tests hold this equal to the template it replaced.
ENDPOINT_ROW = """
    <tr>
      <th scope="row" class="name">{name} <span class="badge team-badge" title="Team">{team}</span></th>
      <td class="endpoint-split">{split}</td>
      <td>{models}</td>
      <td>{task}</td>
      <td>{enabled}</td>
      <td>{limits}</td>
      <td class="number">{calls}</td>
      <td class="number">{errors}</td>
      <td>{last_used_at}</td>
      <td class="row-actions">
        <a href="{edit_url}" aria-label="Edit {name}">Edit</a>
        <a href="{delete_url}" aria-label="Delete {name}" class="danger-link">Delete</a>
      </td>
    </tr>
    """
ENABLED = {True: '<span class="badge badge-ok">Yes</span>', False: '<span class="badge">No</span>'}


def endpoint_rows(rows: list[dict], *, request) -> str:
    """The table body for a page of endpoints (`EndpointListView.get_queryset()` rows), as safe HTML.

    Through the template engine the rows' `{% url %}` tags, lookups and escapes were most of the page's time.
    Each row is one string format, remembered by what makes it (`endpoint_row()`).
    """
    ids = [row["id"] for row in rows]
    routes = destination_cells(ids)
    usage = last_day_by("endpoint", ids)
    page = (*page_constants(), usage_url(request))
    html = []
    for row in rows:
        used = usage.get(row["id"]) or NO_USAGE
        html.append(endpoint_row(page, tuple(row.items()), routes.get(row["id"], ("", "")), used.get("calls"),
                                 used.get("errors"), used.get("last_at")))
    return mark_safe("".join(html))


NO_USAGE: dict = {}


@lru_cache(maxsize=2048)  # forty pages of rows
def endpoint_row(page: tuple, items: tuple, route: tuple[str, str], calls: int | None, errors: int | None,
                 last_at) -> str:
    """One row's HTML, a function of its arguments alone: `core.ui.page_constants()` and the Usage link (`page`),
    the row's values (`items`), its split and models, its usage."""
    zone, usage_link = page[0], page[-1]
    row = dict(items)
    tasks = dict(Endpoint._meta.get_field("task").flatchoices)
    name = escape(row["name"])
    calls, errors = usage_cells("endpoint", usage_link)(row["id"], name, {"calls": calls, "errors": errors})
    split, models = route
    return ENDPOINT_ROW.format(
        name=name,
        team=escape(row["team__name"]),
        split=split,
        models=models,
        task=escape(str(tasks.get(row["task"], row["task"]))),
        enabled=ENABLED[bool(row["enabled"])],
        limits=escape(limits_line(row["requests_per_minute"], row["token_budget"], row["budget_period"])) or "—",
        calls=calls,
        errors=errors,
        last_used_at=time_html(last_at, zone),
        edit_url=escape(name_url("endpoints:edit", row["name"])),
        delete_url=escape(name_url("endpoints:delete", row["name"])),
    )


def destinations_of(ids: list[int]) -> QuerySet:
    """The destinations of some endpoints, in call order, with their connections' names and providers.

    The connection's columns are read by its key for each destination (a subquery each) rather than by a join:
    PostgreSQL joins by hashing the whole connections table.
    """
    connection = Connection.objects.filter(pk=OuterRef("connection_id")).order_by()
    return (Destination.objects.filter(endpoint_id__in=ids).order_by("position", "pk")
            .annotate(connection_name=Subquery(connection.values("name")),
                      connection_provider=Subquery(connection.values("provider")))
            .values_list("endpoint_id", "role", "weight", "connection_name", "model", "connection_provider"))


DESTINATIONS_OF = ForIds(destinations_of)


def destination_cells(endpoint_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Endpoint id → its split (`openai-prod 70% · azure-prod 30%, then anthropic-backup`) and its destinations'
    models (each titled with its provider), escaped, in call order: one query for the page."""
    routes: dict[int, list[tuple]] = {}
    _, rows = DESTINATIONS_OF.fetchall(Destination.objects.db, endpoint_ids)
    for endpoint_id, *destination in rows:
        routes.setdefault(endpoint_id, []).append(tuple(destination))
    language = get_language()
    return {endpoint_id: route_cells(tuple(destinations), language) for endpoint_id, destinations in routes.items()}


@lru_cache(maxsize=4096)
def route_cells(destinations: tuple[tuple, ...], language: str | None) -> tuple[str, str]:
    """One endpoint's split and models from its destinations (role, weight, connection, model, provider), with
    the providers' labels in `language` (the active one)."""
    providers = dict(Connection._meta.get_field("provider").flatchoices)
    return (
        escape(split_line([(role, weight, connection) for role, weight, connection, _, _ in destinations])),
        " ".join(f'<code title="{escape(str(providers.get(provider, provider)))}">{escape(model)}</code>'
                 for _, _, _, model, provider in destinations),
    )


def weight_total(destinations: DestinationFormSet) -> int:
    """The primaries' weights as the form shows them (typed or stored), for the total a page without scripts shows."""
    total = 0
    for row in destinations.forms:
        removed = row["DELETE"].value() if "DELETE" in row.fields else False
        weight = str(row["weight"].value() or "")
        if row["role"].value() == Destination.Role.PRIMARY and row["connection"].value() and not removed:
            total += int(weight) if weight.isdigit() else 0
    return total


class EndpointFormMixin:
    model = Endpoint
    form_class = EndpointForm
    template_name = "endpoints/endpoint_form.html"
    success_url = reverse_lazy("endpoints:list")

    def get_queryset(self):
        return Endpoint.objects.visible_to(self.request.user).select_related("team")

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "user": self.request.user}

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        if "destinations" not in context:
            context["destinations"] = self.destination_formset()
        context["weight_total"] = weight_total(context["destinations"])
        context["has_connections"] = Connection.objects.visible_to(self.request.user).exists()
        return context

    def connection_choices(self, instance: Endpoint):
        """The connections a destination may use: those of the endpoint's team (of the user's teams until
        one is chosen; the endpoint's rules then refuse a connection of another team)."""
        team_id = instance.team_id
        if team_id is None and not self.request.method == "POST":
            only = Team.objects.of(self.request.user)[:2]
            team_id = only[0].pk if len(only) == 1 else None
        choices = connection_choices().visible_to(self.request.user)
        return choices.filter(team_id=team_id) if team_id is not None else choices

    def destination_formset(self, instance: Endpoint | None = None) -> DestinationFormSet:
        instance = instance if instance is not None else (self.object or Endpoint())
        form_kwargs = {"connections": self.connection_choices(instance)}
        if self.request.method == "POST":
            return DestinationFormSet(self.request.POST, instance=instance, prefix="destinations",
                                      form_kwargs=form_kwargs)
        return DestinationFormSet(instance=instance, prefix="destinations", initial=self.destination_initial(),
                                  form_kwargs=form_kwargs)

    def destination_initial(self) -> list[dict]:
        return [{"role": Destination.Role.PRIMARY, "weight": 100}] if not (self.object and self.object.pk) else []

    def post(self, request, *args, **kwargs):
        self.object = self.get_object() if self.slug_url_kwarg in kwargs else None
        form = self.get_form()
        # The endpoint's fields first: its task is what each destination's provider must serve.
        form_valid = form.is_valid()
        destinations = self.destination_formset(form.instance)
        if form_valid and destinations.is_valid():
            return self.form_valid(form, destinations)
        return self.render_to_response(self.get_context_data(form=form, destinations=destinations))

    def save_or_explain(self, form: EndpointForm, destinations: DestinationFormSet) -> Endpoint | None:
        """Save; when the database refuses what validation allowed a moment ago, say why on the form.

        Between the form's checks and the insert, another request may delete a chosen connection (the
        foreign key refuses) or take the name (the unique index refuses).
        """
        chosen = destinations.destinations()
        try:
            with transaction.atomic():  # a savepoint, so the queries below work inside a caller's transaction
                return endpoint_save(endpoint=form.instance, destinations=chosen, actor=self.request.user)
        except IntegrityError:
            ids = {d.connection_id for d in chosen}
            if Connection.objects.filter(pk__in=ids).count() < len(ids):
                form.add_error(None, "A chosen connection was deleted meanwhile: choose another one.")
            else:
                form.add_error(None, "Another change was saved meanwhile (perhaps an endpoint with this name): "
                                     "check the form and save again.")
            return None

    def conflict(self, form: EndpointForm, destinations: DestinationFormSet) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form, destinations=destinations), status=409)


class EndpointCreateView(SettingsPageMixin, EndpointFormMixin, CreateView):
    permission_required = "endpoints.add_endpoint"

    def destination_initial(self) -> list[dict]:
        # `?connection=<name>` preselects the first destination's connection (the connections list links here).
        initial = {"role": Destination.Role.PRIMARY, "weight": 100}
        name = self.request.GET.get("connection", "")
        connection_id = (
            Connection.objects.visible_to(self.request.user).filter(name=name).values_list("pk", flat=True).first()
            if name and could_name_something(name)
            else None
        )
        if connection_id is not None:
            initial["connection"] = connection_id
        return [initial]

    def form_valid(self, form: EndpointForm, destinations: DestinationFormSet) -> HttpResponse:
        endpoint = self.save_or_explain(form, destinations)
        if endpoint is None:
            return self.conflict(form, destinations)
        messages.success(self.request, f"Endpoint “{endpoint.name}” created.")
        return HttpResponseRedirect(self.success_url)


class EndpointUpdateView(SettingsPageMixin, EndpointFormMixin, UpdateView):
    permission_required = "endpoints.change_endpoint"
    slug_field = slug_url_kwarg = "name"

    def form_valid(self, form: EndpointForm, destinations: DestinationFormSet) -> HttpResponse:
        endpoint = self.save_or_explain(form, destinations)
        if endpoint is None:
            return self.conflict(form, destinations)
        messages.success(self.request, f"Endpoint “{endpoint.name}” saved.")
        return HttpResponseRedirect(self.success_url)


class EndpointDeleteView(SettingsPageMixin, DeleteView):
    permission_required = "endpoints.delete_endpoint"
    model = Endpoint
    slug_field = slug_url_kwarg = "name"
    template_name = "endpoints/endpoint_confirm_delete.html"
    success_url = reverse_lazy("endpoints:list")

    def get_queryset(self):
        return Endpoint.objects.visible_to(self.request.user)

    def form_valid(self, form) -> HttpResponse:
        name = self.object.name
        endpoint_delete(endpoint=self.object, actor=self.request.user)
        messages.success(self.request, f"Endpoint “{name}” deleted.")
        return HttpResponseRedirect(self.success_url)
