from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from django.views.generic import RedirectView

from core.health import healthz
from core.names import NameConverter
from usage.views import MetricsView

# `<name:name>` in the apps' URL patterns (registered before their `include()` imports them).
register_converter(NameConverter, "name")

# A database outage raised outside a view is a 503 too; other errors keep the 500 page (JSON under /api/, /gateway/).
handler500 = "core.unavailable.server_error"

urlpatterns = [
    # `/` and `/#/settings` both land on the settings page (the browser keeps the fragment across redirects).
    path("", RedirectView.as_view(url="/settings/", permanent=False)),
    path("settings/", RedirectView.as_view(pattern_name="connections:list", permanent=False), name="settings"),
    path("settings/", include("connections.urls")),
    path("settings/endpoints/", include("endpoints.urls")),
    path("settings/", include("audit.urls")),
    path("settings/", include("usage.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/v1/", include("config.api_urls")),
    path("settings/tokens/", include("tokens.urls")),
]
