"""Settings pages for connections (mounted under /settings/): the tab, its forms and each one's history."""

from django.urls import path

from . import views

app_name = "connections"

urlpatterns = [
    path("connections/", views.ConnectionListView.as_view(), name="list"),
    path("connections/new/", views.ConnectionCreateView.as_view(), name="create"),
    # Test on the form (nothing saved). Not `new/test/`: that is the list's Test of a connection named "new".
    path("connections/new/test-typed/", views.ConnectionCreateTestView.as_view(), name="create_test"),
    path("connections/method-fields/", views.MethodFieldsView.as_view(), name="method_fields"),
    path("connections/<name:name>/edit/", views.ConnectionUpdateView.as_view(), name="edit"),
    path("connections/<name:name>/edit/test-typed/", views.ConnectionUpdateTestView.as_view(), name="edit_test"),
    path("connections/<name:name>/delete/", views.ConnectionDeleteView.as_view(), name="delete"),
    path("connections/<name:name>/test/", views.ConnectionTestView.as_view(), name="test"),
    path("connections/<name:name>/history/", views.ConnectionHistoryView.as_view(), name="history"),
]
