"""The Endpoints tab of the settings page: list, create, edit, delete."""

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from config.names import could_name_something
from connections.models import Connection
from connections.views import PAGE_SIZE, SettingsPageMixin

from .forms import EndpointForm
from .models import Endpoint


class EndpointListView(SettingsPageMixin, ListView):
    permission_required = "endpoints.view_endpoint"
    template_name = "endpoints/endpoint_list.html"
    context_object_name = "endpoints"
    paginate_by = PAGE_SIZE
    queryset = (
        Endpoint.objects.select_related("connection")
        .only("name", "model", "task", "enabled", "connection__name", "connection__provider")
        .order_by("name")
    )


class EndpointFormMixin:
    model = Endpoint
    form_class = EndpointForm
    template_name = "endpoints/endpoint_form.html"
    success_url = reverse_lazy("endpoints:list")


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
        endpoint = form.save()
        messages.success(self.request, f"Endpoint “{endpoint.name}” created.")
        return HttpResponseRedirect(self.success_url)


class EndpointUpdateView(SettingsPageMixin, EndpointFormMixin, UpdateView):
    permission_required = "endpoints.change_endpoint"
    slug_field = slug_url_kwarg = "name"

    def form_valid(self, form: EndpointForm) -> HttpResponse:
        endpoint = form.save()
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
        self.object.delete()
        messages.success(self.request, f"Endpoint “{name}” deleted.")
        return HttpResponseRedirect(self.success_url)
