"""What every page of the settings layout shares: who may see it, how long a page of rows is, where to go back."""

from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

PAGE_SIZE = 50


class SettingsPageMixin(LoginRequiredMixin, PermissionRequiredMixin):
    """Signed-out visitors go to the login page; signed-in users without the permission get 403."""


def safe_next(request: HttpRequest) -> str:
    """The `next` page to return to, when it is a path on this site."""
    target = request.POST.get("next", "")
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts=None) and target.startswith("/") else ""
