"""The Endpoints tab of the settings page: list, create, edit, delete."""

from html import escape  # Django's escape() without its lazy-string wrapper: the same text, a third of the cost

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from connections.models import Connection
from core.limits import limits_line
from core.names import could_name_something
from core.ui import PAGE_SIZE, SettingsPageMixin, name_urls, time_html, usage_cells
from usage.summary import last_day_by

from .forms import EndpointForm
from .models import Endpoint
from .services import endpoint_delete, endpoint_save


class EndpointListView(SettingsPageMixin, ListView):
    permission_required = "endpoints.view_endpoint"
    template_name = "endpoints/endpoint_list.html"
    context_object_name = "endpoints"
    paginate_by = PAGE_SIZE
    # Values, not instances: the rows are rendered by `endpoint_rows()`.
    queryset = Endpoint.objects.order_by("name").values(
        "id", "name", "model", "task", "enabled", *Endpoint.limit_fields, "connection__name", "connection__provider"
    )

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["rows"] = endpoint_rows(context["object_list"], request=self.request)
        return context


# One row of the Endpoints table, as the template language wrote it (the page's text around `{{ rows }}` is the
# template's). Values are escaped before they go in; tests hold this equal to the template it replaced.
ENDPOINT_ROW = """
    <tr>
      <th scope="row" class="name">{name}</th>
      <td><a href="{connection_url}">{connection}</a></td>
      <td>{provider}</td>
      <td><code>{model}</code></td>
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
    """The table body for a page of endpoints (`EndpointListView.queryset` rows), as safe HTML.

    Through the template engine the rows' `{% url %}` tags, lookups and escapes were most of the page's time.
    """
    providers = dict(Connection._meta.get_field("provider").flatchoices)
    tasks = dict(Endpoint._meta.get_field("task").flatchoices)
    connection_url, edit_url, delete_url = (name_urls("connections:edit"), name_urls("endpoints:edit"),
                                            name_urls("endpoints:delete"))
    usage = last_day_by("endpoint", [row["id"] for row in rows])
    cells = usage_cells("endpoint", request)
    zone = timezone.get_current_timezone()
    html = []
    for row in rows:
        name = escape(row["name"])
        provider = row["connection__provider"]
        used = usage.get(row["id"], {})
        calls, errors = cells(row["id"], name, used)
        html.append(ENDPOINT_ROW.format(
            name=name,
            connection_url=escape(connection_url(row["connection__name"])),
            connection=escape(row["connection__name"]),
            provider=escape(str(providers.get(provider, provider))),
            model=escape(row["model"]),
            task=escape(str(tasks.get(row["task"], row["task"]))),
            enabled=ENABLED[bool(row["enabled"])],
            limits=escape(limits_line(row["requests_per_minute"], row["token_budget"], row["budget_period"])) or "—",
            calls=calls,
            errors=errors,
            last_used_at=time_html(used.get("last_at"), zone),
            edit_url=escape(edit_url(row["name"])),
            delete_url=escape(delete_url(row["name"])),
        ))
    return mark_safe("".join(html))


class EndpointFormMixin:
    model = Endpoint
    form_class = EndpointForm
    template_name = "endpoints/endpoint_form.html"
    success_url = reverse_lazy("endpoints:list")

    def save_or_explain(self, form: EndpointForm) -> Endpoint | None:
        """Save; when the database refuses what validation allowed a moment ago, say why on the form.

        Between the form's checks and the insert, another request may delete the chosen connection (the
        foreign key refuses) or take the name (the unique index refuses).
        """
        try:
            with transaction.atomic():  # a savepoint, so the queries below work inside a caller's transaction
                return endpoint_save(endpoint=form.instance, actor=self.request.user)
        except IntegrityError:
            if not Connection.objects.filter(pk=form.instance.connection_id).exists():
                form.add_error("connection", "This connection was deleted meanwhile: choose another one.")
            else:
                form.add_error(None, "Another change was saved meanwhile (perhaps an endpoint with this name): "
                                     "check the form and save again.")
            return None

    def conflict(self, form: EndpointForm) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form), status=409)


class EndpointCreateView(SettingsPageMixin, EndpointFormMixin, CreateView):
    permission_required = "endpoints.add_endpoint"

    def get_initial(self) -> dict:
        # `?connection=<name>` preselects the connection (the connections list links here that way).
        initial = super().get_initial()
        name = self.request.GET.get("connection", "")
        connection_id = (
            Connection.objects.filter(name=name).values_list("pk", flat=True).first()
            if name and could_name_something(name)
            else None
        )
        if connection_id is not None:
            initial["connection"] = connection_id
        return initial

    def form_valid(self, form: EndpointForm) -> HttpResponse:
        endpoint = self.save_or_explain(form)
        if endpoint is None:
            return self.conflict(form)
        messages.success(self.request, f"Endpoint “{endpoint.name}” created.")
        return HttpResponseRedirect(self.success_url)


class EndpointUpdateView(SettingsPageMixin, EndpointFormMixin, UpdateView):
    permission_required = "endpoints.change_endpoint"
    slug_field = slug_url_kwarg = "name"

    def form_valid(self, form: EndpointForm) -> HttpResponse:
        endpoint = self.save_or_explain(form)
        if endpoint is None:
            return self.conflict(form)
        messages.success(self.request, f"Endpoint “{endpoint.name}” saved.")
        return HttpResponseRedirect(self.success_url)


class EndpointDeleteView(SettingsPageMixin, DeleteView):
    permission_required = "endpoints.delete_endpoint"
    model = Endpoint
    slug_field = slug_url_kwarg = "name"
    template_name = "endpoints/endpoint_confirm_delete.html"
    success_url = reverse_lazy("endpoints:list")

    def form_valid(self, form) -> HttpResponse:
        name = self.object.name
        endpoint_delete(endpoint=self.object, actor=self.request.user)
        messages.success(self.request, f"Endpoint “{name}” deleted.")
        return HttpResponseRedirect(self.success_url)
