"""Routes of the REST API, mounted at `/api/v1/`."""

from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from audit.api.views import AuditEntryViewSet
from connections.api.views import ConnectionTestView, ConnectionViewSet, ProviderListView
from endpoints.api.views import EndpointViewSet
from usage.api.views import UsageView


class Router(DefaultRouter):
    include_format_suffixes = False  # JSON only: no `.json` twins of every route


swagger_ui = SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/swagger_ui.html")

router = Router()
router.register("connections", ConnectionViewSet, basename="connection")
router.register("endpoints", EndpointViewSet, basename="endpoint")
router.register("audit", AuditEntryViewSet, basename="audit")

app_name = "api"
urlpatterns = [
    path("providers/", ProviderListView.as_view(), name="providers"),
    # Not `connections/test/`: that is where a connection named "test" lives.
    path("connection-test/", ConnectionTestView.as_view(), name="connection-test"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file and our template has no inline style (CSP); Swagger
    # UI's stylesheet draws its icons as `data:` images, allowed on this page only.
    path("docs/", csp_update({"img-src": ["data:"]})(swagger_ui), name="docs"),
    path("", include(router.urls)),
]
