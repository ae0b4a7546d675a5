"""The Usage tab (mounted under /settings/)."""

from django.urls import path

from . import views

app_name = "usage"

urlpatterns = [
    path("usage/", views.UsagePageView.as_view(), name="usage"),
]
