"""A URLconf whose gateway route fails with a bug, for tests/gateway/test_middleware.py."""

from django.urls import include, path


def broken(request):
    raise ValueError("a bug")


gateway_patterns = ([path("v1/broken", broken)], "gateway")
urlpatterns = [path("gateway/", include(gateway_patterns))]
handler500 = "core.unavailable.server_error"  # as config/urls.py
