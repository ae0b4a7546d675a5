"""The Endpoints tab of the settings page: list, create, edit, delete."""

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from connections.models import Connection
from core.names import could_name_something
from core.ui import PAGE_SIZE, SettingsPageMixin
from usage.summary import with_last_day_of_usage

from .forms import EndpointForm
from .models import Endpoint
from .services import endpoint_delete, endpoint_save


class EndpointListView(SettingsPageMixin, ListView):
    permission_required = "endpoints.view_endpoint"
    template_name = "endpoints/endpoint_list.html"
    context_object_name = "endpoints"
    paginate_by = PAGE_SIZE
    queryset = (
        Endpoint.objects.select_related("connection")
        .only("name", "model", "task", "enabled", *Endpoint.limit_fields, "connection__name", "connection__provider")
        .order_by("name")
    )

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["endpoints"] = with_last_day_of_usage("endpoint", context["endpoints"])
        return context


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
