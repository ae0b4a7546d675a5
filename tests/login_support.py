"""Test-only authentication backend: axes as in production, but the test client's `client.login()` still works.

Django's `Client.login()` calls `authenticate()` without a request, which axes refuses (it counts by the
request's address). Logins through the real login views always pass the request, so they stay throttled.
"""

from axes.backends import AxesStandaloneBackend


class AxesBackendAllowingTestClientLogin(AxesStandaloneBackend):
    """axes' backend, letting a request-less `authenticate()` (only the test client makes one) through unchecked."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
