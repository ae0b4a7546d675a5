"""Login throttling on top of django-axes: whose failures count, and what a throttled login gets (a 429
login page)."""

import ipaddress
from datetime import timedelta

from axes.middleware import AxesMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


class LoginThrottleMiddleware(AxesMiddleware):
    """axes' middleware, run in its synchronous form under ASGI too: its asynchronous form hands the lockout
    callable the credentials in place of the response (axes 8.3), so the try that reaches the limit was a 500."""

    async_capable = False


def client_address(request: HttpRequest) -> str | None:
    """axes' AXES_CLIENT_IP_CALLABLE: the address a login try comes from.

    The socket's peer; with BEHIND_PROXY, the right-most X-Forwarded-For entry, the one the proxy appended
    (nginx's `$proxy_add_x_forwarded_for`). Every entry left of it came from the client, who may have written
    any address there: none of them is ever used, whether it looks public, private or anything else.
    """
    if settings.BEHIND_PROXY:
        appended = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(appended))
        except ValueError:
            pass  # no header: a request that did not come through the proxy (a health check)
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    """What a throttled user reads: why, and for how long."""
    minutes = round(cooloff().total_seconds() / 60)
    return (
        "Too many failed logins for this username from your address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


def cooloff() -> timedelta:
    value = settings.AXES_COOLOFF_TIME
    return value if isinstance(value, timedelta) else timedelta(hours=float(value))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """axes' AXES_LOCKOUT_CALLABLE: the login page it came from (site or admin) with the reason, as HTTP 429.

    axes also calls this for the failure that reaches the limit; that try was checked like any other, so it
    keeps its ordinary "wrong password" page: only the tries after it are refused.
    """
    if getattr(request, "axes_failures_since_start", None) is not None and original_response is not None:
        return original_response
    message = lockout_message()
    context = getattr(original_response, "context_data", None) or {}
    form = context.get("form")
    template = getattr(original_response, "template_name", None)
    if form is None or template is None:
        return HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    # The password was never checked, so the form's "enter a correct password" would mislead.
    form.errors.clear()
    form.add_error(None, message)
    response = TemplateResponse(request, template, context, status=429)
    return response.render()
