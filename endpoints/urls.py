"""Settings pages for endpoints (mounted under /settings/endpoints/)."""

from django.urls import path

from . import views

app_name = "endpoints"

urlpatterns = [
    path("", views.EndpointListView.as_view(), name="list"),
    path("new/", views.EndpointCreateView.as_view(), name="create"),
    path("<name:name>/edit/", views.EndpointUpdateView.as_view(), name="edit"),
    path("<name:name>/delete/", views.EndpointDeleteView.as_view(), name="delete"),
]
